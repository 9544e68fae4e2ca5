pub mod apt;
pub mod http;

pub mod apt;
pub mod dnf;
pub mod http;

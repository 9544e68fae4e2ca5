use super::{invalid, json};
use crate::catalog::Refusal;
use crate::catalog::feed::{Feed, ImportedFeed};
use crate::policy::model::FeedFormat;

/// patchward's own feed: the format is the model.
pub fn parse_patchward(bytes: &[u8]) -> Result<ImportedFeed, Refusal> {
    let feed: Feed = json(FeedFormat::Patchward, bytes)?;
    if feed.expires_at.0 <= feed.generated_at.0 {
        return Err(invalid(FeedFormat::Patchward, "`expiresAt` is not after `generatedAt`".into()));
    }
    Ok(ImportedFeed {
        revision: feed.revision,
        generated_at: Some(feed.generated_at.0),
        expires_at: Some(feed.expires_at.0),
        patches: feed.patches,
        warnings: Vec::new(),
    })
}

//! The media store: each file under its media id, with its metadata beside
//! it as JSON (`<id>.json`), in an object store (`object_store`), so that a
//! folder under the files root and S3-compatible storage work alike.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

/// What the bridge knows of a stored file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MediaRecord {
    pub id: String,
    /// The session the file belongs to (a session key reaches only its own).
    pub session: String,
    pub mimetype: String,
    /// Hex SHA-256 of the file.
    pub sha256: String,
    pub size: u64,
    #[serde(default)]
    pub file_name: Option<String>,
    /// For a downloaded file: the message it came with.
    #[serde(default)]
    pub message_id: Option<String>,
    /// image, video, audio, voice, document or sticker, when known.
    #[serde(default)]
    pub kind: Option<String>,
    /// Unix seconds.
    pub created_at: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("no media {0}")]
    NotFound(String),
    #[error("media store: {0}")]
    Store(String),
}

impl From<object_store::Error> for MediaError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { path, .. } => Self::NotFound(path),
            e => Self::Store(e.to_string()),
        }
    }
}

impl From<std::io::Error> for MediaError {
    fn from(e: std::io::Error) -> Self {
        Self::Store(e.to_string())
    }
}

/// Media ids: `med_` and 32 hex digits.
pub fn valid_id(id: &str) -> bool {
    id.strip_prefix("med_")
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub struct MediaStore {
    objects: Arc<dyn ObjectStore>,
    /// Files being received or fetched are written here first (local disk
    /// whatever the store), then moved into the store once complete.
    staging: PathBuf,
}

impl MediaStore {
    pub fn new(objects: Arc<dyn ObjectStore>, staging: &Path) -> Result<Self, MediaError> {
        std::fs::create_dir_all(staging)?;
        Ok(Self {
            objects,
            staging: staging.to_path_buf(),
        })
    }

    /// Files under `dir` (created if needed).
    pub fn local(dir: &Path, staging: &Path) -> Result<Self, MediaError> {
        std::fs::create_dir_all(dir)?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)?
            .with_automatic_cleanup(true);
        Self::new(Arc::new(fs), staging)
    }

    /// A fresh path in the staging folder; the caller removes it.
    pub fn staging_path(&self) -> PathBuf {
        self.staging
            .join(format!("{}.part", hex::encode(rand::random::<[u8; 12]>())))
    }

    fn data_key(id: &str) -> Key {
        Key::from(format!("{id}.bin"))
    }

    fn meta_key(id: &str) -> Key {
        Key::from(format!("{id}.json"))
    }

    /// Moves a complete file into the store, streamed in parts (a large
    /// file never sits in memory), then writes its metadata: a record
    /// exists only for a file that is wholly stored.
    pub async fn put_file(&self, rec: &MediaRecord, path: &Path) -> Result<(), MediaError> {
        let mut out =
            object_store::buffered::BufWriter::new(self.objects.clone(), Self::data_key(&rec.id));
        let mut file = tokio::fs::File::open(path).await?;
        let copied = tokio::io::copy(&mut file, &mut out).await;
        if let Err(e) = copied {
            let _ = out.abort().await;
            return Err(e.into());
        }
        out.shutdown().await?;
        let meta = serde_json::to_vec(rec).map_err(|e| MediaError::Store(e.to_string()))?;
        self.objects
            .put(&Self::meta_key(&rec.id), PutPayload::from(meta))
            .await?;
        Ok(())
    }

    pub async fn get(&self, id: &str) -> Result<MediaRecord, MediaError> {
        if !valid_id(id) {
            return Err(MediaError::NotFound(id.to_string()));
        }
        let bytes = self
            .objects
            .get(&Self::meta_key(id))
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => MediaError::NotFound(id.to_string()),
                e => e.into(),
            })?
            .bytes()
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| MediaError::Store(format!("{id}: {e}")))
    }

    /// The file's bytes, whole or a range of them, as a stream.
    pub async fn read(
        &self,
        id: &str,
        range: Option<Range<u64>>,
    ) -> Result<BoxStream<'static, Result<Bytes, MediaError>>, MediaError> {
        let opts = GetOptions {
            range: range.map(GetRange::Bounded),
            ..Default::default()
        };
        let got = self
            .objects
            .get_opts(&Self::data_key(id), opts)
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => MediaError::NotFound(id.to_string()),
                e => e.into(),
            })?;
        Ok(got.into_stream().map_err(MediaError::from).boxed())
    }

    /// Copies a stored file to a local path (to send it again).
    pub async fn copy_to(&self, id: &str, dest: &Path) -> Result<(), MediaError> {
        let mut stream = self.read(id, None).await?;
        let mut out = tokio::fs::File::create(dest).await?;
        while let Some(chunk) = stream.next().await {
            out.write_all(&chunk?).await?;
        }
        out.flush().await?;
        Ok(())
    }

    /// The whole file in memory (webhooks that ask for it inline).
    pub async fn read_all(&self, id: &str) -> Result<Vec<u8>, MediaError> {
        let mut stream = self.read(id, None).await?;
        let mut all = Vec::new();
        while let Some(chunk) = stream.next().await {
            all.extend_from_slice(&chunk?);
        }
        Ok(all)
    }

    /// Removes the metadata first: a file without it is invisible, so a
    /// delete that stops halfway leaves nothing reachable.
    pub async fn delete(&self, id: &str) -> Result<(), MediaError> {
        self.objects.delete(&Self::meta_key(id)).await?;
        match self.objects.delete(&Self::data_key(id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes every file stored before `cutoff` (unix seconds); returns
    /// how many.
    pub async fn sweep(&self, cutoff: u64) -> Result<usize, MediaError> {
        let metas: Vec<_> = self.objects.list(None).try_collect().await?;
        let mut removed = 0;
        for m in metas {
            let name = m.location.filename().unwrap_or_default();
            let Some(id) = name.strip_suffix(".json").filter(|id| valid_id(id)) else {
                continue;
            };
            if (m.last_modified.timestamp().max(0) as u64) < cutoff {
                self.delete(id).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

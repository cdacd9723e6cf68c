//! Deletion vectors (the Delta protocol's `deletionVectors` table feature): an upsert marks the
//! replaced rows of a data file as deleted in a small bitmap instead of rewriting the file, so
//! its cost follows the rows it touches, not the size of the files that hold them.
//!
//! The format is the protocol's: a DV file starts with a version byte (1), then each vector is
//! its size (big-endian u32, magic included), the `RoaringBitmapArray` magic (little-endian
//! u32 1681511377), a 64-bit Roaring bitmap in the portable serialization, and a CRC-32 of
//! magic and bitmap (big-endian). A descriptor names the file by a z85-encoded UUID
//! (`storageType: u`), or holds the bitmap inline (`i`). We write one DV file per commit,
//! holding the vectors of every file the commit touches.

use deltalake::arrow::array::{BooleanArray, RecordBatch};
use deltalake::arrow::compute::filter_record_batch;
use deltalake::arrow::error::ArrowError;
use deltalake::kernel::{DeletionVectorDescriptor, StorageType};
use roaring::RoaringTreemap;

const MAGIC: u32 = 1681511377;
const VERSION: u8 = 1;
/// Length of a z85-encoded UUID (16 bytes), the end of a `u` descriptor's path.
const ENCODED_UUID: usize = 20;

fn crc() -> crc::Crc<u32> {
    crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC)
}

/// The name of the DV file of `uuid`, relative to its directory.
fn file_name(uuid: &uuid::Uuid) -> String {
    format!("deletion_vector_{uuid}.bin")
}

/// `batch` without the rows `deleted` names, the batch's first row being row `first` of its
/// file (a batch no deleted row falls in is returned as is).
pub fn drop_deleted(
    batch: RecordBatch,
    first: u64,
    deleted: &RoaringTreemap,
) -> Result<RecordBatch, ArrowError> {
    let end = first + batch.num_rows() as u64;
    if deleted.range_cardinality(first..end) == 0 {
        return Ok(batch);
    }
    let keep: BooleanArray = (first..end).map(|r| Some(!deleted.contains(r))).collect();
    filter_record_batch(&batch, &keep)
}

/// DV files read during one operation, by path (a commit's vectors share one file).
pub type Cache = std::collections::HashMap<String, bytes::Bytes>;

/// Where a descriptor's bitmap lives.
pub enum Location {
    /// A file relative to the table's root, and the vector's offset in it.
    File { path: String, offset: usize },
    /// In the descriptor itself (z85-decoded bytes: magic, then bitmap).
    Inline(Vec<u8>),
}

/// Where the bitmap of `dv` is stored.
pub fn locate(dv: &DeletionVectorDescriptor) -> Result<Location, String> {
    match dv.storage_type {
        StorageType::UuidRelativePath => {
            let p = dv.path_or_inline_dv.as_bytes();
            if p.len() < ENCODED_UUID {
                return Err(format!(
                    "path {:?} is shorter than an encoded UUID",
                    dv.path_or_inline_dv
                ));
            }
            let (prefix, encoded) = p.split_at(p.len() - ENCODED_UUID);
            let uuid = z85::decode(encoded)
                .ok()
                .and_then(|b| uuid::Uuid::from_slice(&b).ok())
                .ok_or_else(|| format!("path {:?} has no valid UUID", dv.path_or_inline_dv))?;
            let prefix = std::str::from_utf8(prefix).map_err(|e| e.to_string())?;
            let name = file_name(&uuid);
            let path = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let offset = usize::try_from(dv.offset.unwrap_or(1))
                .map_err(|_| format!("negative offset {:?}", dv.offset))?;
            Ok(Location::File { path, offset })
        }
        StorageType::Inline => z85::decode(&dv.path_or_inline_dv)
            .map(Location::Inline)
            .map_err(|e| format!("inline vector is not z85: {e:?}")),
        StorageType::AbsolutePath => Err(format!(
            "absolute deletion vector paths ({}) are not supported",
            dv.path_or_inline_dv
        )),
    }
}

/// The bitmap of the vector at `offset` in DV file `bytes` (`size` from the descriptor).
pub fn read_at(bytes: &[u8], offset: usize, size: i32) -> Result<RoaringTreemap, String> {
    if bytes.first() != Some(&VERSION) {
        return Err(format!("unknown DV file version {:?}", bytes.first()));
    }
    let size = usize::try_from(size).map_err(|_| format!("negative size {size}"))?;
    let end = offset
        .checked_add(4 + size + 4)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| {
            format!(
                "vector at {offset} ({size} bytes) runs past the file's {} bytes",
                bytes.len()
            )
        })?;
    let stored = u32::from_be_bytes(bytes[offset..offset + 4].try_into().unwrap_or_default());
    if stored as usize != size {
        return Err(format!(
            "vector at {offset} is {stored} bytes, the log says {size}"
        ));
    }
    let data = &bytes[offset + 4..offset + 4 + size];
    let sum = u32::from_be_bytes(bytes[end - 4..end].try_into().unwrap_or_default());
    if crc().checksum(data) != sum {
        return Err(format!("vector at {offset} fails its checksum"));
    }
    parse(data)
}

/// Magic, then a portable 64-bit Roaring bitmap.
pub fn parse(data: &[u8]) -> Result<RoaringTreemap, String> {
    match data.get(..4) {
        Some(m) if u32::from_le_bytes(m.try_into().unwrap_or_default()) == MAGIC => {
            RoaringTreemap::deserialize_from(&data[4..]).map_err(|e| e.to_string())
        }
        _ => Err("not a portable RoaringBitmapArray (bad magic)".into()),
    }
}

/// A DV file being assembled: the vectors of one commit.
pub struct DvFile {
    uuid: uuid::Uuid,
    bytes: Vec<u8>,
}

impl Default for DvFile {
    fn default() -> Self {
        DvFile {
            // Time-ordered, like data file names: the orphan sweep knows our files by it.
            uuid: uuid::Uuid::now_v7(),
            bytes: vec![VERSION],
        }
    }
}

impl DvFile {
    /// The file's name, relative to the table's root.
    pub fn path(&self) -> String {
        file_name(&self.uuid)
    }

    /// The file's content so far.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Appends `dv` and returns the descriptor naming it.
    pub fn push(&mut self, dv: &RoaringTreemap) -> Result<DeletionVectorDescriptor, String> {
        let offset = self.bytes.len();
        let mut data = MAGIC.to_le_bytes().to_vec();
        dv.serialize_into(&mut data).map_err(|e| e.to_string())?;
        let size = i32::try_from(data.len()).map_err(|_| "deletion vector over 2 GiB")?;
        self.bytes
            .extend_from_slice(&(data.len() as u32).to_be_bytes());
        self.bytes.extend_from_slice(&data);
        self.bytes
            .extend_from_slice(&crc().checksum(&data).to_be_bytes());
        Ok(DeletionVectorDescriptor {
            storage_type: StorageType::UuidRelativePath,
            path_or_inline_dv: z85::encode(self.uuid.as_bytes()),
            offset: Some(i32::try_from(offset).map_err(|_| "DV file over 2 GiB")?),
            size_in_bytes: size,
            cardinality: dv.len() as i64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_read_back_from_the_file_their_descriptors_name() {
        let mut file = DvFile::default();
        let a: RoaringTreemap = [0u64, 7, 8, 1 << 33].into_iter().collect();
        let b: RoaringTreemap = (100u64..5000).step_by(3).collect();
        let da = file.push(&a).unwrap();
        let db = file.push(&b).unwrap();
        assert_eq!((da.cardinality, db.cardinality), (4, b.len() as i64));
        for (d, want) in [(&da, &a), (&db, &b)] {
            let Location::File { path, offset } = locate(d).unwrap() else {
                panic!("a file descriptor")
            };
            assert_eq!(path, file.path());
            assert_eq!(
                &read_at(file.bytes(), offset, d.size_in_bytes).unwrap(),
                want
            );
        }
        // A flipped bit in the bitmap is caught by the checksum, a wrong size by the header.
        let Location::File { offset, .. } = locate(&db).unwrap() else {
            panic!()
        };
        let mut bad = file.bytes().to_vec();
        bad[offset + 12] ^= 1;
        assert!(read_at(&bad, offset, db.size_in_bytes)
            .unwrap_err()
            .contains("checksum"));
        assert!(read_at(file.bytes(), offset, db.size_in_bytes + 1).is_err());
    }

    #[test]
    fn an_inline_vector_and_a_prefixed_path_are_understood() {
        // The delta kernel's example, behind a prefix of two characters.
        let d = DeletionVectorDescriptor {
            storage_type: StorageType::UuidRelativePath,
            path_or_inline_dv: "abvBn[lx{q8@P<9BNH/isA".into(),
            offset: Some(4),
            size_in_bytes: 40,
            cardinality: 6,
        };
        let Location::File { path, offset } = locate(&d).unwrap() else {
            panic!()
        };
        assert_eq!(
            (path.as_str(), offset),
            (
                "ab/deletion_vector_61d16c75-6994-46b7-a15b-8b538852e50e.bin",
                4
            )
        );
        let dv: RoaringTreemap = [3u64, 4, 9].into_iter().collect();
        let mut data = MAGIC.to_le_bytes().to_vec();
        dv.serialize_into(&mut data).unwrap();
        while !data.len().is_multiple_of(4) {
            data.push(0); // z85 encodes whole 4-byte words
        }
        let inline = DeletionVectorDescriptor {
            storage_type: StorageType::Inline,
            path_or_inline_dv: z85::encode(&data),
            offset: None,
            size_in_bytes: data.len() as i32,
            cardinality: 3,
        };
        let Location::Inline(bytes) = locate(&inline).unwrap() else {
            panic!()
        };
        assert_eq!(parse(&bytes).unwrap(), dv);
    }
}

//! Image references: Docker's grammar and normalization, shared with the apiserver's validation
//! (`berth_proto::spec::image`), so an image the apiserver accepted is one this node can parse.

pub(super) use berth_proto::spec::image::{Reference, is_sha256_digest};

//! TEMP STUB
use berth_proto::node::RegistryCredential;
use tonic::transport::Channel;
#[derive(Debug, Clone)]
pub struct ImageConfig {
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub user: String,
}
#[derive(Debug, Clone)]
pub struct PulledImage {
    pub reference: String,
    pub manifest_digest: String,
    pub chain_id: String,
    pub config: ImageConfig,
    pub cached: bool,
}
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("x")]
    Auth,
}
pub struct ImageService;
impl ImageService {
    pub fn new(_c: Channel, _n: &str, _s: &str) -> Self {
        Self
    }
    pub fn with_insecure_registries(self, _h: Vec<String>) -> Self {
        self
    }
    pub async fn ensure(
        &self,
        _i: &str,
        _c: &[RegistryCredential],
    ) -> Result<PulledImage, PullError> {
        Err(PullError::Auth)
    }
}

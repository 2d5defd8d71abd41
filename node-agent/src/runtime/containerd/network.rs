//! TEMP STUB
use std::net::IpAddr;
use std::path::PathBuf;
pub struct NetworkConfig {
    pub cni_bin_dir: PathBuf,
    pub state_dir: PathBuf,
    pub bridge: String,
    pub subnet: String,
    pub publish_ports: bool,
}
pub struct Network;
pub struct Sandbox {
    pub id: String,
    pub netns: PathBuf,
    pub ip: IpAddr,
    pub gateway: Option<IpAddr>,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}
#[derive(Debug, Clone, Copy)]
pub struct PortSpec {
    pub port: u16,
    pub protocol: Protocol,
}
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("x")]
    X,
}
pub fn default_cni_bin_dir() -> PathBuf {
    PathBuf::new()
}
impl Network {
    pub fn new(_c: NetworkConfig) -> Result<Network, NetworkError> {
        Ok(Network)
    }
    pub async fn setup(&self, _id: &str, _p: &[PortSpec]) -> Result<Sandbox, NetworkError> {
        Err(NetworkError::X)
    }
    pub async fn teardown(&self, _id: &str) -> Result<(), NetworkError> {
        Ok(())
    }
    pub fn sandboxes(&self) -> Vec<String> {
        vec![]
    }
}

//! Thin helpers over containerd's gRPC services, all in one containerd namespace. "Not found" on a
//! delete and "already exists" on a create are successes: every caller is idempotent.

use std::collections::HashMap;

use containerd_client::services::v1::container::Runtime as ContainerRuntime;
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    MountsRequest, PrepareSnapshotRequest, RemoveSnapshotRequest,
};
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    CloseIoRequest, Container, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest,
    DeleteProcessRequest, DeleteTaskRequest, ExecProcessRequest, GetContainerRequest, GetRequest,
    KillRequest, ListContainersRequest, ResizePtyRequest, StartRequest, WaitRequest,
};
use containerd_client::types::Mount;
use containerd_client::types::v1::Status as TaskStatus;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// containerd's media type for an OCI runtime spec stored on a container.
const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
/// containerd's media type for the OCI process spec of an exec process.
const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
/// The shim every Berth container runs under.
const RUNC_V2: &str = "io.containerd.runc.v2";

/// What containerd knows of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskInfo {
    pub pid: u32,
    pub running: bool,
    pub exit_status: u32,
    pub exited_at_ms: i64,
}

/// Where an exec process's stdio goes: FIFO paths, empty for none.
#[derive(Debug, Clone, Copy)]
pub struct ExecStdio<'a> {
    pub stdin: &'a str,
    pub stdout: &'a str,
    pub stderr: &'a str,
    pub terminal: bool,
}

/// A containerd connection scoped to one namespace and snapshotter.
#[derive(Clone)]
pub struct Containerd {
    channel: Channel,
    namespace: String,
    snapshotter: String,
}

fn ok_if(code: Code) -> impl Fn(Status) -> Result<(), Status> {
    move |status| {
        if status.code() == code {
            Ok(())
        } else {
            Err(status)
        }
    }
}

pub fn timestamp_ms(t: Option<&prost_types::Timestamp>) -> i64 {
    t.map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
}

impl Containerd {
    pub fn new(channel: Channel, namespace: &str, snapshotter: &str) -> Self {
        Self {
            channel,
            namespace: namespace.to_string(),
            snapshotter: snapshotter.to_string(),
        }
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Ok(value) = self.namespace.parse() {
            request.metadata_mut().insert("containerd-namespace", value);
        }
        request
    }

    fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
    }

    fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone())
    }

    fn snapshots(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.channel.clone())
    }

    /// Creates container `id` with its own writable snapshot over `parent` (an image's chain id).
    /// A leftover container of the same id (an older spec) is replaced.
    pub async fn create_container(
        &self,
        id: &str,
        image: &str,
        parent: &str,
        spec: &serde_json::Value,
        labels: HashMap<String, String>,
    ) -> Result<(), Status> {
        self.delete_container(id).await?;
        let spec = serde_json::to_vec(spec).map_err(|e| Status::internal(e.to_string()))?;
        let container = Container {
            id: id.to_string(),
            labels,
            image: image.to_string(),
            runtime: Some(ContainerRuntime {
                name: RUNC_V2.to_string(),
                options: None,
            }),
            spec: Some(prost_types::Any {
                type_url: SPEC_TYPE_URL.to_string(),
                value: spec,
            }),
            snapshotter: self.snapshotter.clone(),
            snapshot_key: id.to_string(),
            ..Default::default()
        };
        // The container first: it is what keeps the snapshot from containerd's garbage collector
        // (an active snapshot nothing references is collected at the next GC round).
        self.containers()
            .create(self.request(CreateContainerRequest {
                container: Some(container),
            }))
            .await?;
        let prepared = self
            .snapshots()
            .prepare(self.request(PrepareSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                key: id.to_string(),
                parent: parent.to_string(),
                labels: HashMap::new(),
            }))
            .await;
        prepared.map(|_| ()).or_else(ok_if(Code::AlreadyExists))?;
        Ok(())
    }

    /// Creates and starts the task of container `id` with its output going to `stdio` (a
    /// `binary://` log driver URI). A stopped task left from a previous run is deleted first.
    pub async fn start_task(&self, id: &str, stdio: &str) -> Result<u32, Status> {
        self.create_task(id, stdio).await?;
        self.start_created(id).await
    }

    /// Creates the task of container `id` (runc create: namespaces, mounts, cgroups; the process does
    /// not run yet). A stopped task left from a previous run is deleted first.
    pub async fn create_task(&self, id: &str, stdio: &str) -> Result<(), Status> {
        self.delete_task(id).await?;
        let mounts: Vec<Mount> = self
            .snapshots()
            .mounts(self.request(MountsRequest {
                snapshotter: self.snapshotter.clone(),
                key: id.to_string(),
            }))
            .await?
            .into_inner()
            .mounts;
        self.tasks()
            .create(self.request(CreateTaskRequest {
                container_id: id.to_string(),
                rootfs: mounts,
                stdin: String::new(),
                stdout: stdio.to_string(),
                stderr: stdio.to_string(),
                terminal: false,
                ..Default::default()
            }))
            .await?;
        Ok(())
    }

    /// Starts the process of a created task; returns its pid.
    pub async fn start_created(&self, id: &str) -> Result<u32, Status> {
        let started = self
            .tasks()
            .start(self.request(StartRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            }))
            .await;
        match started {
            Ok(response) => Ok(response.into_inner().pid),
            Err(status) => {
                // A task that cannot start (bad command, missing binary) must not linger.
                let _ = self.delete_task(id).await;
                Err(status)
            }
        }
    }

    /// The task of container `id`, if it has one.
    pub async fn task(&self, id: &str) -> Result<Option<TaskInfo>, Status> {
        let got = self
            .tasks()
            .get(self.request(GetRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            }))
            .await;
        let process = match got {
            Ok(response) => response.into_inner().process,
            Err(status) if status.code() == Code::NotFound => return Ok(None),
            Err(status) => return Err(status),
        };
        Ok(process.map(|p| TaskInfo {
            pid: p.pid,
            running: p.status != TaskStatus::Stopped as i32,
            exit_status: p.exit_status,
            exited_at_ms: timestamp_ms(p.exited_at.as_ref()),
        }))
    }

    /// Sends `signal` to every process of the task (a missing task is fine).
    pub async fn kill(&self, id: &str, signal: u32) -> Result<(), Status> {
        let killed = self
            .tasks()
            .kill(self.request(KillRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
                signal,
                all: true,
            }))
            .await;
        killed
            .map(|_| ())
            .or_else(ok_if(Code::NotFound))
            .or_else(|s| {
                // Killing a task that already exited.
                if s.code() == Code::FailedPrecondition {
                    Ok(())
                } else {
                    Err(s)
                }
            })
    }

    /// Waits for the task's exit: `(exit status, exited at ms)`.
    pub async fn wait(&self, id: &str) -> Result<(u32, i64), Status> {
        self.wait_process(id, "").await
    }

    /// Waits for the exit of process `exec_id` of the task (`""`: its init process).
    pub async fn wait_process(&self, id: &str, exec_id: &str) -> Result<(u32, i64), Status> {
        let response = self
            .tasks()
            .wait(self.request(WaitRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
            }))
            .await?
            .into_inner();
        Ok((
            response.exit_status,
            timestamp_ms(response.exited_at.as_ref()),
        ))
    }

    /// The OCI runtime spec container `id` was created with.
    pub async fn container_spec(&self, id: &str) -> Result<serde_json::Value, Status> {
        let container = self
            .containers()
            .get(self.request(GetContainerRequest { id: id.to_string() }))
            .await?
            .into_inner()
            .container
            .ok_or_else(|| Status::not_found(format!("container {id} has no record")))?;
        let spec = container
            .spec
            .ok_or_else(|| Status::failed_precondition(format!("container {id} has no spec")))?;
        serde_json::from_slice(&spec.value)
            .map_err(|e| Status::internal(format!("the spec of container {id}: {e}")))
    }

    /// Adds process `exec_id`, described by the OCI `process` spec, to the running task of
    /// container `id` (it does not run until [`Containerd::start_process`]).
    pub async fn exec(
        &self,
        id: &str,
        exec_id: &str,
        process: &serde_json::Value,
        stdio: ExecStdio<'_>,
    ) -> Result<(), Status> {
        let spec = serde_json::to_vec(process).map_err(|e| Status::internal(e.to_string()))?;
        self.tasks()
            .exec(self.request(ExecProcessRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                stdin: stdio.stdin.to_string(),
                stdout: stdio.stdout.to_string(),
                stderr: stdio.stderr.to_string(),
                terminal: stdio.terminal,
                spec: Some(prost_types::Any {
                    type_url: PROCESS_TYPE_URL.to_string(),
                    value: spec,
                }),
            }))
            .await?;
        Ok(())
    }

    /// Starts process `exec_id` of the task of container `id`; returns its pid.
    pub async fn start_process(&self, id: &str, exec_id: &str) -> Result<u32, Status> {
        let started = self
            .tasks()
            .start(self.request(StartRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
            }))
            .await?;
        Ok(started.into_inner().pid)
    }

    /// Sends `signal` to process `exec_id` only (a process that is gone or exited is fine).
    pub async fn kill_process(&self, id: &str, exec_id: &str, signal: u32) -> Result<(), Status> {
        let killed = self
            .tasks()
            .kill(self.request(KillRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                signal,
                all: false,
            }))
            .await;
        killed
            .map(|_| ())
            .or_else(ok_if(Code::NotFound))
            .or_else(ok_if(Code::FailedPrecondition))
    }

    /// Closes the stdin of process `exec_id`: it reads end of file.
    pub async fn close_stdin(&self, id: &str, exec_id: &str) -> Result<(), Status> {
        self.tasks()
            .close_io(self.request(CloseIoRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                stdin: true,
            }))
            .await?;
        Ok(())
    }

    /// Resizes the terminal of process `exec_id`.
    pub async fn resize_pty(
        &self,
        id: &str,
        exec_id: &str,
        rows: u32,
        cols: u32,
    ) -> Result<(), Status> {
        self.tasks()
            .resize_pty(self.request(ResizePtyRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                width: cols,
                height: rows,
            }))
            .await?;
        Ok(())
    }

    /// Deletes the record of exited process `exec_id` (a missing one is fine). The runc shim first
    /// waits (up to 2 s) for the process's output to be copied, then closes its ends of the FIFOs.
    pub async fn delete_process(&self, id: &str, exec_id: &str) -> Result<(), Status> {
        let deleted = self
            .tasks()
            .delete_process(self.request(DeleteProcessRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
            }))
            .await;
        deleted.map(|_| ()).or_else(ok_if(Code::NotFound))
    }

    /// Deletes a stopped task (a missing one is fine).
    pub async fn delete_task(&self, id: &str) -> Result<(), Status> {
        let deleted = self
            .tasks()
            .delete(self.request(DeleteTaskRequest {
                container_id: id.to_string(),
            }))
            .await;
        deleted.map(|_| ()).or_else(ok_if(Code::NotFound))
    }

    /// Deletes the container and its snapshot (its task must be gone; missing ones are fine).
    pub async fn delete_container(&self, id: &str) -> Result<(), Status> {
        let deleted = self
            .containers()
            .delete(self.request(DeleteContainerRequest { id: id.to_string() }))
            .await;
        deleted.map(|_| ()).or_else(ok_if(Code::NotFound))?;
        let removed = self
            .snapshots()
            .remove(self.request(RemoveSnapshotRequest {
                snapshotter: self.snapshotter.clone(),
                key: id.to_string(),
            }))
            .await;
        removed.map(|_| ()).or_else(ok_if(Code::NotFound))
    }

    /// Every container carrying label `key` (optionally `= value`).
    pub async fn containers_labelled(
        &self,
        key: &str,
        value: Option<&str>,
    ) -> Result<Vec<Container>, Status> {
        let filter = match value {
            Some(value) => format!("labels.\"{key}\"==\"{value}\""),
            None => format!("labels.\"{key}\""),
        };
        Ok(self
            .containers()
            .list(self.request(ListContainersRequest {
                filters: vec![filter],
            }))
            .await?
            .into_inner()
            .containers)
    }

    /// Kills, waits for and deletes the task, then deletes the container and its snapshot.
    pub async fn destroy(&self, id: &str) -> Result<(), Status> {
        if let Some(task) = self.task(id).await? {
            if task.running {
                self.kill(id, 9).await?;
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(10), self.wait(id)).await;
            }
            self.delete_task(id).await?;
        }
        self.delete_container(id).await
    }
}

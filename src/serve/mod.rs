//! The live lab (`backsync serve`): every simulated directory server gets an
//! LDAP port, the lab an HTTP admin API, and the simulated clock follows
//! the real one times `speed`.
//!
//! ```text
//!  ldapsearch ─┐                    the lab thread
//!  ldapadd ────┼─► ldap.rs: a task per connection ─┐ calls   ┌─► lab.rs: the Cluster
//!  curl ───────┴─► admin.rs (axum) ────────────────┴────────►│   (actors, paused clock),
//!                  network runtime (real clock)  ◄─ answers ─┘   moved with the real clock
//! ```
//!
//! One thread runs both: the lab moves the clock, lets the network run
//! until a call comes or 2 ms pass, answers the calls, and again. A request
//! crosses no thread, which on a busy machine matters more than a second
//! core would.
//!
//! **What is traded for a real clock.** A run of `backsync run` is
//! deterministic: the same file and seed give the same trace. Here the
//! moment a client's request reaches the lab depends on the real clock and
//! the OS, so the simulated time at which a write happens, and hence the
//! USNs, stamps and message order, differ from run to run. What stays the
//! same: the actors, the protocol and its rules are the same code; the
//! simulated clock is still the paused tokio clock of one thread, moved
//! forward in steps to `speed` times the real time elapsed (a step stands
//! for at most 20 ms of real time, so calls are answered between steps when
//! the simulation falls behind); between two steps everything is as
//! deterministic as in a run; and a write is applied at one simulated
//! instant, atomically, as a scenario step is.

mod admin;
pub mod entry;
mod lab;
mod ldap;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

pub use lab::{Admin, AdminFail, Change, LdapFail, Search, Status, Write};
pub use ldap::{
    Auth, MAX_CONNECTIONS, MAX_ENTRIES, MAX_MESSAGE, PAGED_RESULTS_OID, SHOW_DELETED_OID,
    TREE_DELETE_OID,
};

use crate::error::ClusterError;
use crate::run::{RunOptions, RunReport};
use crate::scenario::Scenario;

/// The fastest `--speed`: a million simulated seconds per real second.
pub const MAX_SPEED: f64 = 1_000_000.0;

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Server `i` listens for LDAP on this address's port + `i` (port 0:
    /// each server on a port the system picks).
    pub ldap: SocketAddr,
    /// The admin API's address.
    pub admin: SocketAddr,
    /// Simulated seconds per real second, more than 0 and at most
    /// [`MAX_SPEED`].
    pub speed: f64,
    /// Writes need a simple bind with this password.
    pub bind_password: Option<String>,
    /// Allow addresses that are not loopback without a password.
    pub insecure: bool,
    /// Overrides the file's seed.
    pub seed: Option<u64>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            ldap: SocketAddr::from(([127, 0, 0, 1], 3890)),
            admin: SocketAddr::from(([127, 0, 0, 1], 8080)),
            speed: 1.0,
            bind_password: None,
            insecure: false,
            seed: None,
        }
    }
}

/// Why the lab did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// `--speed` out of its bounds.
    #[error("--speed {0}: must be more than 0 and at most {MAX_SPEED}")]
    Speed(f64),
    /// An address that is not loopback, with no password and no `--insecure`.
    #[error(
        "--{flag} {addr} is not a loopback address: give --bind-password so that writes need one, \
         or --insecure to serve the lab open on the network"
    )]
    NotLoopback {
        /// `ldap` or `admin`.
        flag: &'static str,
        /// The address.
        addr: SocketAddr,
    },
    /// Port + server number past 65535.
    #[error("--ldap port {port} + {servers} servers passes port 65535")]
    Ports {
        /// The first port.
        port: u16,
        /// Servers.
        servers: usize,
    },
    /// A port that cannot be listened on.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The scenario's cluster could not be built or run.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The lab thread or the network runtime could not start.
    #[error("the lab could not start: {0}")]
    Start(String),
}

impl ServeError {
    /// Whether the options were wrong (exit 2) rather than the machine.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ServeError::Speed(_) | ServeError::NotLoopback { .. } | ServeError::Ports { .. }
        )
    }
}

/// Checks the options against a scenario's servers, before anything starts.
pub fn check(opts: &ServeOptions, servers: usize) -> Result<(), ServeError> {
    if !(opts.speed > 0.0 && opts.speed <= MAX_SPEED) {
        return Err(ServeError::Speed(opts.speed));
    }
    if opts.bind_password.is_none() && !opts.insecure {
        for (flag, addr) in [("ldap", opts.ldap), ("admin", opts.admin)] {
            if !loopback(addr.ip()) {
                return Err(ServeError::NotLoopback { flag, addr });
            }
        }
    }
    let port = opts.ldap.port();
    if port != 0 && usize::from(port) + servers.saturating_sub(1) > usize::from(u16::MAX) {
        return Err(ServeError::Ports { port, servers });
    }
    Ok(())
}

fn loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v| v.is_loopback()),
    }
}

/// A running lab: its ports open, its clock moving.
pub struct Running {
    report: RunReport,
    ldap: Vec<(String, SocketAddr)>,
    admin: SocketAddr,
    lab: lab::LabHandle,
    thread: Option<JoinHandle<()>>,
}

/// What the lab thread sends back once it serves, or why it could not.
type Started = Result<(RunReport, Vec<(String, SocketAddr)>, SocketAddr), ServeError>;

/// Builds the scenario's cluster, runs its steps, opens an LDAP port for
/// every server that is up and the admin API, and starts the clock.
///
/// ```no_run
/// use backsync::Scenario;
/// use backsync::serve::{self, ServeOptions};
/// let s = Scenario::from_path("scenarios/kb_q190703.toml".as_ref()).unwrap();
/// let lab = serve::start(&s, &ServeOptions::default()).unwrap();
/// for (name, addr) in lab.ldap_addrs() {
///     println!("{name} ldap://{addr}");
/// }
/// lab.stop();
/// ```
pub fn start(s: &Scenario, opts: &ServeOptions) -> Result<Running, ServeError> {
    let names = s.server_names();
    check(opts, names.len())?;
    let (tx, rx) = crossbeam_channel::unbounded();
    let handle = lab::LabHandle {
        tx,
        wake: Arc::new(tokio::sync::Notify::new()),
    };
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Started>();
    let scenario = s.clone();
    let opts = opts.clone();
    let lab_handle = handle.clone();
    let server_names = names.clone();
    // The cluster lives on its own thread (its actix System and paused
    // clock belong to the thread that built them), and the network with it.
    let thread = std::thread::Builder::new()
        .name("backsync-lab".into())
        .spawn(move || {
            let run_opts = RunOptions {
                seed: opts.seed,
                ..RunOptions::default()
            };
            let built = crate::run::start(&scenario, &run_opts).and_then(|mut c| {
                let report = crate::run::run_on(&mut c, &scenario, &run_opts)?;
                Ok((c, report))
            });
            let (c, report) = match built {
                Ok(b) => b,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.into()));
                    return;
                }
            };
            let lab = lab::Lab::new(c, &scenario.fixed_containers(), opts.speed);
            let net = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(ServeError::Start(e.to_string())));
                    return;
                }
            };
            let shutdown = CancellationToken::new();
            let opened = net.block_on(open(&opts, &lab_handle, server_names, &lab.up(), &shutdown));
            match opened {
                Ok((ldap, admin)) => {
                    if ready_tx.send(Ok((report, ldap, admin))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            }
            lab.run(rx, &net, &lab_handle.wake);
            // Dropping the runtime drops every listener and connection.
            shutdown.cancel();
            net.shutdown_timeout(Duration::from_millis(100));
        })
        .map_err(|e| ServeError::Start(e.to_string()))?;
    let (report, ldap, admin) = ready_rx
        .recv()
        .map_err(|_| ServeError::Start("the lab thread ended".into()))??;
    Ok(Running {
        report,
        ldap,
        admin,
        lab: handle,
        thread: Some(thread),
    })
}

/// Opens the LDAP ports of the servers that are up and the admin API
/// (runs on the lab thread's network runtime).
async fn open(
    opts: &ServeOptions,
    lab: &lab::LabHandle,
    names: Vec<String>,
    up: &[bool],
    shutdown: &CancellationToken,
) -> Result<(Vec<(String, SocketAddr)>, SocketAddr), ServeError> {
    let addrs: Vec<SocketAddr> = (0..names.len())
        .map(|i| match opts.ldap.port() {
            0 => opts.ldap,
            p => SocketAddr::new(opts.ldap.ip(), p + i as u16),
        })
        .collect();
    let ports = ldap::Ports::new(
        addrs,
        lab.clone(),
        Auth {
            password: opts.bind_password.clone(),
        },
        shutdown.clone(),
    );
    let mut ldap = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let addr = if up[i] {
            ports.open(i).await.map_err(|source| ServeError::Listen {
                addr: ports.addr(i),
                source,
            })?
        } else {
            ports.addr(i)
        };
        ldap.push((name.clone(), addr));
    }
    let listen = |source| ServeError::Listen {
        addr: opts.admin,
        source,
    };
    let listener = tokio::net::TcpListener::bind(opts.admin)
        .await
        .map_err(listen)?;
    let admin = listener.local_addr().map_err(listen)?;
    let app = admin::router(admin::Api {
        lab: lab.clone(),
        ports,
        names: Arc::new(names),
    });
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
    });
    Ok((ldap, admin))
}

/// A lab dropped without [`Running::stop`] stops all the same (without
/// waiting for its thread).
impl Drop for Running {
    fn drop(&mut self) {
        self.lab.stop();
    }
}

impl Running {
    /// The report of the scenario's steps, run before serving.
    pub fn report(&self) -> &RunReport {
        &self.report
    }

    /// Each server's LDAP address, in the file's order.
    pub fn ldap_addrs(&self) -> &[(String, SocketAddr)] {
        &self.ldap
    }

    /// The admin API's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// Serves until SIGINT or SIGTERM (Ctrl-C elsewhere), then stops.
    pub fn serve_until_signal(self) -> std::io::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let waited = rt.block_on(async {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{SignalKind, signal};
                let mut term = signal(SignalKind::terminate())?;
                let mut int = signal(SignalKind::interrupt())?;
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
                Ok(())
            }
            #[cfg(not(unix))]
            {
                tokio::signal::ctrl_c().await
            }
        });
        self.stop();
        waited
    }

    /// Closes every port and connection and stops the lab, within about
    /// half a second.
    pub fn stop(mut self) {
        self.lab.stop();
        let deadline = Instant::now() + Duration::from_millis(500);
        if let Some(t) = self.thread.take() {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

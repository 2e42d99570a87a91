//! `send-floor`: what the kernel alone charges for one delivery on this machine.
//!
//! One thread writes a small WebSocket text frame (the size of a fan-out delivery) to each of N
//! loopback TCP connections in turn, at a given rate of messages per second, as a server's
//! writers do for a broadcast; a tokio runtime on another thread reads every connection, as
//! the load generator's clients do. The writing thread's CPU time per write is the floor under
//! any server's CPU per delivery here: on loopback a write also runs the receiving side's TCP
//! processing and wakes its reader, and all of that is billed to the writer. No Fawkes code runs.

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt as _;

/// The calling thread's user + system CPU time, seconds.
fn thread_cpu() -> Result<f64, String> {
    crate::stats::cpu_seconds("/proc/thread-self/stat")
        .ok_or_else(|| "unreadable /proc/thread-self/stat".to_owned())
}

/// A WebSocket text frame (server to client: unmasked) carrying `len` bytes.
fn text_frame(len: usize) -> Vec<u8> {
    let mut frame = vec![0x81];
    match u16::try_from(len) {
        Ok(n) if n < 126 => frame.push(n as u8),
        Ok(n) => {
            frame.push(126);
            frame.extend_from_slice(&n.to_be_bytes());
        }
        Err(_) => {
            frame.push(127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.resize(frame.len() + len, b'x');
    frame
}

pub(crate) fn run(connections: usize, rate: f64, seconds: u64, bytes: usize) -> Result<(), String> {
    if connections == 0 || seconds == 0 || !(rate.is_finite() && rate > 0.0) {
        return Err("send-floor needs connections > 0, seconds > 0 and a positive rate".into());
    }
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut writers = Vec::with_capacity(connections);
    let mut readers = Vec::with_capacity(connections);
    for _ in 0..connections {
        let reader = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        let (writer, _) = listener.accept().map_err(|e| e.to_string())?;
        writer.set_nodelay(true).map_err(|e| e.to_string())?;
        reader.set_nonblocking(true).map_err(|e| e.to_string())?;
        writers.push(writer);
        readers.push(reader);
    }
    let frame = text_frame(bytes);
    let rounds = ((rate * seconds as f64).ceil() as usize).max(1);
    let expected = (rounds * frame.len()) as u64;
    println!(
        "send-floor: {connections} loopback connections, {rounds} messages of {} bytes at {rate}/s",
        frame.len()
    );

    // The readers: one task per connection on a runtime of their own, as a load generator.
    let reading = std::thread::spawn(move || -> Result<u64, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async move {
            let mut tasks = Vec::with_capacity(readers.len());
            for reader in readers {
                let mut reader =
                    tokio::net::TcpStream::from_std(reader).map_err(|e| e.to_string())?;
                tasks.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut got = 0u64;
                    while got < expected {
                        match reader.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => got += n as u64,
                        }
                    }
                    got
                }));
            }
            let mut total = 0;
            for task in tasks {
                total += task.await.map_err(|e| e.to_string())?;
            }
            Ok(total)
        })
    });

    let every = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    let cpu_before = thread_cpu()?;
    for round in 0..rounds {
        for writer in &mut writers {
            writer.write_all(&frame).map_err(|e| e.to_string())?;
        }
        // Paced like a publisher: readers go idle between messages and each write wakes one.
        let next = started + every * (round as u32 + 1);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let cpu = thread_cpu()? - cpu_before;
    let wall = started.elapsed();
    let received = reading
        .join()
        .map_err(|_| "the reader thread panicked".to_owned())??;
    let writes = rounds * connections;
    println!(
        "writes:              {writes} in {:.2}s; {} of {} bytes read",
        wall.as_secs_f64(),
        received,
        expected * connections as u64
    );
    println!(
        "writer CPU:          {cpu:.2}s = {:.2} µs per write = {:.2} s per 100k writes",
        cpu * 1e6 / writes as f64,
        cpu * 1e5 / writes as f64
    );
    Ok(())
}

/// An actor that does nothing: what one idle ractor actor costs.
struct Idle;

impl ractor::Actor for Idle {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ractor::ActorRef<()>,
        _args: (),
    ) -> Result<(), ractor::ActorProcessingErr> {
        Ok(())
    }
}

/// `actor-floor`: the resident memory of N idle ractor actors (spawned as the server spawns
/// its socket actors, linked to a supervisor), per actor: the floor under the memory of a
/// connection in a design with one actor per connection.
pub(crate) async fn actors(count: usize) -> Result<(), String> {
    if count == 0 {
        return Err("actor-floor needs at least one actor".into());
    }
    let rss = || crate::stats::own().map(|s| s.rss).unwrap_or_default();
    let (supervisor, _) = ractor::Actor::spawn(None, Idle, ())
        .await
        .map_err(|e| e.to_string())?;
    // Warm the allocator and the runtime with a first batch, then measure a second one.
    let mut actors = Vec::with_capacity(2 * count);
    for _ in 0..count {
        let (actor, _) = ractor::Actor::spawn_linked(None, Idle, (), supervisor.get_cell())
            .await
            .map_err(|e| e.to_string())?;
        actors.push(actor);
    }
    let before = rss();
    for _ in 0..count {
        let (actor, _) = ractor::Actor::spawn_linked(None, Idle, (), supervisor.get_cell())
            .await
            .map_err(|e| e.to_string())?;
        actors.push(actor);
    }
    let after = rss();
    println!("actor-floor: {count} idle ractor actors (after {count} more as a warm-up)");
    println!(
        "resident memory:     {} → {} = {} bytes per actor",
        crate::stats::mib(before),
        crate::stats::mib(after),
        after.saturating_sub(before) / count as u64
    );
    for actor in actors {
        actor.stop(None);
    }
    supervisor.stop(None);
    Ok(())
}

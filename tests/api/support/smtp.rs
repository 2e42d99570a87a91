//! A minimal SMTP server on port 0 that accepts every message and hands it to the test.

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

pub struct FakeSmtp {
    pub port: u16,
    pub messages: mpsc::UnboundedReceiver<String>,
}

impl FakeSmtp {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind smtp");
        let port = listener.local_addr().expect("addr").port();
        let (tx, messages) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, tx.clone()));
            }
        });
        Self { port, messages }
    }
}

async fn session(stream: TcpStream, tx: mpsc::UnboundedSender<String>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    if write.write_all(b"220 fake.test ESMTP\r\n").await.is_err() {
        return;
    }
    let (mut in_data, mut data) = (false, String::new());
    while let Ok(Some(line)) = lines.next_line().await {
        if in_data {
            if line == "." {
                in_data = false;
                let _ = tx.send(std::mem::take(&mut data));
                let _ = write.write_all(b"250 2.0.0 queued\r\n").await;
            } else {
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
                data.push('\n');
            }
            continue;
        }
        let verb = line.get(..4).unwrap_or(&line).to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" | "HELO" => b"250 fake.test\r\n",
            "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 2.1.0 OK\r\n",
            "DATA" => {
                in_data = true;
                b"354 go ahead\r\n"
            }
            "QUIT" => {
                let _ = write.write_all(b"221 2.0.0 bye\r\n").await;
                return;
            }
            _ => b"502 5.5.2 not implemented\r\n",
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}

//! `nfq-delay QUEUE DELAY_MS`: holds every packet of netfilter queue QUEUE for DELAY_MS,
//! then accepts it, in arrival order.
//!
//! tests/bench sends the OUTPUT packets of a network namespace's loopback here
//! (`iptables -A OUTPUT -o lo -j NFQUEUE --queue-num QUEUE`): each packet crosses OUTPUT
//! once, so DELAY_MS is half the round-trip time. Runs until killed; prints `ready` once
//! bound to the queue.

use std::collections::VecDeque;
use std::io::Write;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, queue_num, delay_ms] = &args[..] else {
        eprintln!("usage: nfq-delay QUEUE DELAY_MS");
        std::process::exit(2);
    };
    let queue_num: u16 = queue_num.parse().expect("QUEUE");
    let delay = Duration::from_secs_f64(delay_ms.parse::<f64>().expect("DELAY_MS") / 1e3);
    let mut queue = nfq::Queue::open().expect("netfilter queue socket (root?)");
    queue.bind(queue_num).expect("bind queue");
    queue.set_nonblocking(true);
    println!("ready");
    let _ = std::io::stdout().flush();
    let mut held: VecDeque<(Instant, nfq::Message)> = VecDeque::new();
    loop {
        loop {
            match queue.recv() {
                Ok(mut msg) => {
                    msg.set_verdict(nfq::Verdict::Accept);
                    held.push_back((Instant::now() + delay, msg));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("nfq recv: {e}"),
            }
        }
        let now = Instant::now();
        while held.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, msg)) = held.pop_front() {
                queue.verdict(msg).expect("verdict");
            }
        }
        // The socket has no readiness API here: poll at a granularity well below the delay.
        std::thread::sleep(Duration::from_micros(200));
    }
}

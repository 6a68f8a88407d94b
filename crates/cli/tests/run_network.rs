//! Container networking end to end, as root, with the busybox base: the default `bridge`
//! network with NAT to an "outside" (a network namespace the test makes, never a real
//! address), teardown that leaves no namespace, veth or firewall rule, names on user networks
//! but not on the default bridge, and published ports (UDP, random host ports, `-P`). In a
//! network namespace playing the host: a whole create/run/rm/network rm cycle leaves its
//! iptables, links and `ip_forward` exactly as they were (issue 23), also when `network rm`
//! races `network create` and when an orphaned bridge is collected; forwarding someone else
//! came to need stays on; a host interface named like kiln's bridges is not caught by kiln's
//! isolation.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The tests of this file run one at a time: they make and remove bridges and subnets (a
/// bridge deleted on purpose frees its subnet for a concurrent test to take).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

mod common;
use common::containers::RunEnv as Env;
use common::netns::TestNetns;

/// The default bridge's interface name, once it exists.
fn bridge_if(env: &Env) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["network", "inspect", "bridge"])).expect("json");
    v[0]["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .expect("the default bridge exists")
        .to_string()
}

fn sh(cmd: &str, args: &[&str]) -> Output {
    let out = Command::new(cmd).args(args).output().expect("run");
    assert!(out.status.success(), "{cmd} {args:?}: {out:?}");
    out
}

/// An "outside" for NAT tests: a network namespace of the test's own, joined to the host by a
/// veth pair with a /30 of TEST-NET-2 (198.51.100.0/24, documentation-only addresses); it
/// routes nothing back to the containers' subnets, so only NAT'd traffic can get answers.
struct Outside {
    netns: String,
    host_if: String,
    addr: &'static str,
}

impl Outside {
    fn new() -> Outside {
        let routes = String::from_utf8_lossy(&sh("ip", &["-4", "route"]).stdout).into_owned();
        assert!(
            !routes.contains("198.51.100."),
            "this host already routes TEST-NET-2: {routes}"
        );
        let pid = std::process::id();
        let o = Outside {
            netns: format!("kiln-test-out-{pid}"),
            host_if: format!("kto{pid}"),
            addr: "198.51.100.2",
        };
        sh("ip", &["netns", "add", &o.netns]);
        sh(
            "ip",
            &[
                "link", "add", &o.host_if, "type", "veth", "peer", "name", "eth0", "netns",
                &o.netns,
            ],
        );
        sh("ip", &["addr", "add", "198.51.100.1/30", "dev", &o.host_if]);
        sh("ip", &["link", "set", &o.host_if, "up"]);
        sh(
            "ip",
            &[
                "-n",
                &o.netns,
                "addr",
                "add",
                "198.51.100.2/30",
                "dev",
                "eth0",
            ],
        );
        sh("ip", &["-n", &o.netns, "link", "set", "eth0", "up"]);
        sh("ip", &["-n", &o.netns, "link", "set", "lo", "up"]);
        o
    }

    /// A TCP listener inside the outside namespace (a socket stays in the namespace it was
    /// made in, so a thread joins it just to bind).
    fn listen(&self) -> TcpListener {
        let path = format!("/run/netns/{}", self.netns);
        std::thread::spawn(move || {
            let f = std::fs::File::open(path).expect("open netns");
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            TcpListener::bind("198.51.100.2:0").expect("bind outside")
        })
        .join()
        .expect("listener thread")
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
    }
}

/// Waits (up to 10 s) for `gone` to hold: the kernel frees a namespace and the veth pair in it
/// asynchronously after its last process exits.
fn eventually(what: &str, gone: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !gone() {
        assert!(Instant::now() < until, "still there after 10 s: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn firewall_mentions(bridge: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (table, chain) in [
        ("filter", "KILN-FORWARD"),
        ("filter", "KILN-ISOLATION"),
        ("nat", "KILN-POSTROUTING"),
    ] {
        let o = Command::new("iptables")
            .args(["-w", "-t", table, "-S", chain])
            .output()
            .expect("iptables");
        out.extend(
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.contains(bridge))
                .map(str::to_string),
        );
    }
    out
}

#[test]
fn run_joins_the_default_bridge_and_reaches_the_outside_through_nat() {
    let Some(env) = Env::serial(&SERIAL, &[]) else {
        return;
    };
    let ls = env.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert_eq!(
        ls.lines().take(3).collect::<Vec<_>>(),
        ["bridge", "host", "none"]
    );
    let outside = Outside::new();
    let listener = outside.listen();
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().expect("accept");
        let mut got = String::new();
        s.read_to_string(&mut got).expect("read");
        (got, peer.ip().to_string())
    });
    let script = format!(
        "ip -4 addr show eth0 | awk '/inet / {{print $2}}'; cat /etc/hostname; \
         printf from-container | nc -w 5 {} {port}",
        outside.addr
    );
    let out = env.ok(&["run", "--rm", "busybox", "sh", "-c", &script]);
    let mut lines = out.lines();
    let addr = lines.next().expect("an address");
    assert!(addr.starts_with("10.89.") && addr.ends_with("/24"), "{out}");
    let (got, peer) = server.join().expect("server");
    assert_eq!(got, "from-container");
    // Masqueraded: the outside sees the host's address on its link, not the container's.
    assert_eq!(peer, "198.51.100.1");

    // The --rm container left no namespace or veth behind (its hostname is its ID's prefix).
    let id12 = lines.next().expect("hostname").trim().to_string();
    assert_eq!(id12.len(), 12, "{out}");
    assert!(
        !Path::new("/run/netns")
            .join(format!("kiln-{id12}"))
            .exists()
    );
    eventually("the --rm container's veth", || {
        !link_exists(&format!("vk{}", &id12[..10]))
    });

    // A detached one has both while it runs, and neither once removed.
    env.ok(&["run", "-d", "--name", "long", "busybox", "sleep", "60"]);
    let id = env.inspect("long")["Id"].as_str().expect("id").to_string();
    let netns = Path::new("/run/netns").join(format!("kiln-{}", &id[..12]));
    let veth = format!("vk{}", &id[..10]);
    assert!(netns.exists() && link_exists(&veth));
    env.ok(&["rm", "-f", "long"]);
    assert!(!netns.exists());
    eventually("the removed container's veth", || !link_exists(&veth));

    // Removing the network removes its bridge and every firewall rule naming it.
    let bridge = bridge_if(&env);
    assert_eq!(firewall_mentions(&bridge).len(), 5);
    env.ok(&["network", "rm", "bridge"]);
    assert!(!link_exists(&bridge));
    assert_eq!(firewall_mentions(&bridge), Vec::<String>::new());
}

#[test]
fn the_default_bridge_gives_no_names_but_a_user_network_does() {
    let Some(env) = Env::serial(&SERIAL, &[]) else {
        return;
    };
    env.ok(&["run", "-d", "--name", "srv", "busybox", "sleep", "60"]);
    let srv_ip = env.inspect("srv")["NetworkSettings"]["IPAddress"]
        .as_str()
        .expect("ip")
        .to_string();
    assert!(srv_ip.starts_with("10.89."), "{srv_ip}");
    // Only the container's own name is in its hosts file, as with Docker's default bridge;
    // the address itself is reachable.
    let hosts = env.ok(&[
        "run",
        "--rm",
        "--hostname",
        "me",
        "busybox",
        "cat",
        "/etc/hosts",
    ]);
    assert!(!hosts.contains("srv"), "{hosts}");
    assert!(
        hosts
            .lines()
            .any(|l| l.starts_with("10.89.") && l.ends_with("\tme")),
        "{hosts}"
    );
    let ping = format!("ping -c 1 -W 2 {srv_ip} >/dev/null && echo reached");
    assert_eq!(
        env.ok(&["run", "--rm", "busybox", "sh", "-c", &ping]),
        "reached\n"
    );

    let net = format!("n{}", std::process::id());
    env.ok(&["network", "create", &net]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        "peer",
        "--network",
        &net,
        "busybox",
        "sleep",
        "60",
    ]);
    let hosts = env.ok(&[
        "run",
        "--rm",
        "--network",
        &net,
        "busybox",
        "cat",
        "/etc/hosts",
    ]);
    assert!(hosts.lines().any(|l| l.contains("\tpeer\t")), "{hosts}");
    // Different networks are isolated: the default bridge cannot reach the user network.
    let peer_ip = env.inspect("peer")["NetworkSettings"]["IPAddress"]
        .as_str()
        .expect("ip")
        .to_string();
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["network", "inspect", &net])).expect("json");
    let members = v[0]["Containers"].as_object().expect("members");
    assert_eq!(members.len(), 1, "{v}");
    let member = members.values().next().expect("peer");
    assert_eq!(member["Name"], "peer");
    assert_eq!(member["IPv4Address"], format!("{peer_ip}/24"));
    let ping = format!("ping -c 1 -W 1 {peer_ip} >/dev/null && echo reached || echo blocked");
    assert_eq!(
        env.ok(&["run", "--rm", "busybox", "sh", "-c", &ping]),
        "blocked\n"
    );
}

#[test]
fn a_deleted_roots_bridge_is_collected_and_a_lost_bridge_comes_back() {
    let Some(gone) = Env::serial(&SERIAL, &[]) else {
        return;
    };
    gone.ok(&["run", "--rm", "busybox", "true"]);
    let orphan = bridge_if(&gone);
    assert!(link_exists(&orphan));
    // The root goes away without `network rm` (as a deleted tempdir root does).
    std::fs::remove_dir_all(gone.root.join("networks")).expect("remove the records");

    let Some(env) = Env::holding(&[], None) else {
        return;
    };
    let net = format!("x{}", std::process::id());
    env.ok(&["network", "create", &net]);
    assert!(
        !link_exists(&orphan),
        "the orphaned bridge {orphan} is still there"
    );
    assert_eq!(firewall_mentions(&orphan), Vec::<String>::new());

    // A bridge lost while its record stays (a reboot) is made again by the next container.
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["network", "inspect", &net])).expect("json");
    let bridge = v[0]["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .expect("bridge")
        .to_string();
    sh("ip", &["link", "del", &bridge]);
    assert_eq!(
        env.ok(&["run", "--rm", "--network", &net, "busybox", "echo", "back"]),
        "back\n"
    );
    assert!(link_exists(&bridge));
    assert_eq!(firewall_mentions(&bridge).len(), 5);
}

fn http_get(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(b"GET /i HTTP/1.0\r\n\r\n").expect("write");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

/// Sends `msg` until an answer comes back (the server may still be starting).
fn udp_roundtrip(port: u16, msg: &[u8]) -> Option<Vec<u8>> {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_millis(250)))
        .expect("timeout");
    let mut buf = [0u8; 512];
    for _ in 0..40 {
        s.send_to(msg, ("127.0.0.1", port)).expect("send");
        if let Ok(n) = s.recv(&mut buf) {
            return Some(buf[..n].to_vec());
        }
    }
    None
}

/// A UDP server answering each datagram reversed, bound to `127.0.0.1:port` inside the
/// network namespace of process `pid` (busybox has no UDP server applet). Ends after 20 s.
fn udp_reverser_in(pid: u64, port: u16) {
    let ready = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/proc/{pid}/ns/net")).expect("open netns");
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let s = UdpSocket::bind(("127.0.0.1", port)).expect("bind inside");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        ready.0.send(()).expect("ready");
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let back: Vec<u8> = buf[..n].iter().rev().copied().collect();
            let _ = s.send_to(&back, from);
        }
    });
    ready.1.recv().expect("udp server started");
}

/// `kiln port C [P]` output's host port.
fn host_port(line: &str) -> u16 {
    line.trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no host port in {line:?}"))
}

#[test]
fn published_ports_udp_random_host_ports_and_publish_all() {
    let Some(env) = Env::serial(&SERIAL, &["EXPOSE 80/tcp", "EXPOSE 5353/udp"]) else {
        return;
    };
    let serve = "mkdir /www && echo hello-web > /www/i && exec httpd -f -p 80 -h /www";
    env.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-P",
        "-p",
        "127.0.0.1::8080",
        "busybox",
        "sh",
        "-c",
        serve,
    ]);
    let listed = env.ok(&["port", "web"]);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 3, "{listed}");
    for want in [
        "8080/tcp -> 127.0.0.1:",
        "80/tcp -> 0.0.0.0:",
        "5353/udp -> 0.0.0.0:",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "{want}: {listed}"
        );
    }
    let web = host_port(&env.ok(&["port", "web", "80"]));
    let dns = host_port(&env.ok(&["port", "web", "5353/udp"]));
    assert!(web != 0 && dns != 0 && web != dns);
    assert!(!env.kiln(&["port", "web", "81"]).status.success());

    // TCP through the random port (httpd may take a moment to listen).
    let mut body = String::new();
    for _ in 0..50 {
        body = http_get(web);
        if body.contains("hello-web") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(body.contains("hello-web"), "{body}");

    // UDP: each client gets a socket inside the container; answers come back to the client.
    let pid = env.inspect("web")["State"]["Pid"].as_u64().expect("pid");
    udp_reverser_in(pid, 5353);
    assert_eq!(udp_roundtrip(dns, b"ping").as_deref(), Some(&b"gnip"[..]));
    assert_eq!(
        udp_roundtrip(dns, b"second").as_deref(),
        Some(&b"dnoces"[..])
    );

    // inspect and ps show the bound ports; the configured binding keeps an empty host port.
    let inspect = env.inspect("web");
    assert_eq!(
        inspect["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"],
        web.to_string()
    );
    assert_eq!(
        inspect["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"],
        ""
    );
    let ps = env.ok(&["ps"]);
    assert!(ps.contains(&format!("0.0.0.0:{dns}->5353/udp")), "{ps}");

    // Once stopped, a random port is no longer shown.
    env.ok(&["stop", "-t", "0", "web"]);
    assert_eq!(env.ok(&["port", "web"]), "");
}

/// `kiln --root ROOT ARGS` inside `ns`; asserts success and returns stdout.
fn kiln_in(ns: &TestNetns, env: &Env, args: &[&str]) -> String {
    let root = env.root.to_str().expect("utf-8 root");
    let mut all = vec!["--root", root];
    all.extend_from_slice(args);
    let out = ns
        .command(Path::new(env!("CARGO_BIN_EXE_kiln")), &all)
        .output()
        .expect("run kiln");
    assert!(
        out.status.success(),
        "kiln {args:?} in {}: {}",
        ns.name,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The bridge interface of network `name` of `env`'s root.
fn bridge_of(ns: &TestNetns, env: &Env, name: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&kiln_in(ns, env, &["network", "inspect", name])).expect("json");
    v[0]["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .expect("a bridge")
        .to_string()
}

#[test]
fn issue_23_a_network_cycle_leaves_the_hosts_firewall_links_and_forwarding_as_they_were() {
    let Some(env) = Env::new(&[]) else { return };
    // Forwarding off before (kiln turns it on and off again) and on before (kiln leaves it).
    for forwarding in [false, true] {
        let Some(ns) = TestNetns::new("cycle") else {
            return;
        };
        ns.be_a_host(forwarding);
        let before = ns.state();
        kiln_in(&ns, &env, &["network", "create", "n1"]);
        let during = ns.state();
        assert_eq!(during.ip_forward, "1");
        assert!(
            during.iptables.contains("-A FORWARD -j KILN-FORWARD\n"),
            "{}",
            during.iptables
        );
        assert_eq!(
            kiln_in(&ns, &env, &["run", "--rm", "busybox", "echo", "on-bridge"]),
            "on-bridge\n"
        );
        assert_eq!(
            kiln_in(
                &ns,
                &env,
                &["run", "--rm", "--network", "n1", "busybox", "echo", "on-n1"]
            ),
            "on-n1\n"
        );
        kiln_in(
            &ns,
            &env,
            &[
                "run",
                "-d",
                "--name",
                "d",
                "--network",
                "n1",
                "busybox",
                "sleep",
                "60",
            ],
        );
        kiln_in(&ns, &env, &["rm", "-f", "d"]);
        kiln_in(&ns, &env, &["network", "rm", "n1"]);
        // The default bridge is the last: with it go kiln's chains and its forwarding.
        assert!(ns.state().iptables.contains("KILN-FORWARD"));
        kiln_in(&ns, &env, &["network", "rm", "bridge"]);
        ns.assert_state_is(&before);
        let record = ns.forwarding_record().expect("namespace");
        assert!(!record.exists(), "{} left behind", record.display());
    }
}

#[test]
fn issue_23_network_rm_racing_network_create_keeps_the_new_networks_rules() {
    let Some(env) = Env::new(&[]) else { return };
    let Some(ns) = TestNetns::new("race") else {
        return;
    };
    ns.be_a_host(false);
    let before = ns.state();
    for round in 0..3 {
        let (old, new) = (format!("old{round}"), format!("new{round}"));
        kiln_in(&ns, &env, &["network", "create", &old]);
        // The last network going (chains and forwarding with it) while another comes.
        std::thread::scope(|s| {
            s.spawn(|| kiln_in(&ns, &env, &["network", "rm", &old]));
            s.spawn(|| kiln_in(&ns, &env, &["network", "create", &new]));
        });
        let bridge = bridge_of(&ns, &env, &new);
        let now = ns.state();
        assert_eq!(now.ip_forward, "1", "round {round}");
        for wanted in [
            "-A FORWARD -j KILN-FORWARD".to_string(),
            "-A POSTROUTING -j KILN-POSTROUTING".into(),
            format!("-A KILN-ISOLATION -o {bridge} -j DROP"),
            format!("-A KILN-FORWARD -i {bridge} -j ACCEPT"),
            format!("! -o {bridge} -j MASQUERADE"),
        ] {
            assert!(
                now.iptables.contains(&wanted),
                "round {round}: no {wanted:?} in\n{}",
                now.iptables
            );
        }
        assert_eq!(
            kiln_in(
                &ns,
                &env,
                &["run", "--rm", "--network", &new, "busybox", "echo", "up"]
            ),
            "up\n"
        );
        kiln_in(&ns, &env, &["network", "rm", &new]);
        ns.assert_state_is(&before);
    }
}

#[test]
fn issue_23_an_orphaned_bridge_collected_gives_back_what_it_alone_needed() {
    let (Some(gone), Some(env)) = (Env::new(&[]), Env::new(&[])) else {
        return;
    };
    let Some(ns) = TestNetns::new("orphan") else {
        return;
    };
    ns.be_a_host(false);
    let before = ns.state();
    kiln_in(&ns, &gone, &["network", "create", "n1"]);
    // That root goes away without `network rm`; the next network collects its bridge.
    std::fs::remove_dir_all(gone.root.join("networks")).expect("remove the records");
    kiln_in(&ns, &env, &["network", "create", "n2"]);
    kiln_in(&ns, &env, &["network", "rm", "n2"]);
    ns.assert_state_is(&before);
}

#[test]
fn issue_23_forwarding_someone_else_came_to_need_stays_on() {
    let Some(env) = Env::new(&[]) else { return };
    let Some(ns) = TestNetns::new("fwd") else {
        return;
    };
    ns.be_a_host(false);
    let before = ns.state();
    kiln_in(&ns, &env, &["network", "create", "n1"]);
    // A Docker started meanwhile finds forwarding on and makes its bridge.
    ns.ok("ip", &["link", "add", "docker0", "type", "bridge"]);
    kiln_in(&ns, &env, &["network", "rm", "n1"]);
    let after = ns.state();
    assert_eq!(after.ip_forward, "1", "docker0 may route through it");
    assert_eq!(after.iptables, before.iptables, "kiln's chains are gone");
    let record = ns.forwarding_record().expect("namespace");
    assert!(!record.exists(), "forwarding is no longer kiln's");
}

#[test]
fn a_host_interface_named_like_kilns_bridges_is_not_isolated_from_containers() {
    let Some(env) = Env::new(&[]) else { return };
    let (Some(ns), Some(outside)) = (TestNetns::new("kbhost"), TestNetns::new("out")) else {
        return;
    };
    ns.be_a_host(true);
    // kiln's bridges are `kb` + 10 hex digits; this one is the host's, to an "outside".
    ns.ok(
        "ip",
        &[
            "link",
            "add",
            "kbhost0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &outside.name,
        ],
    );
    ns.ok("ip", &["addr", "add", "198.51.100.1/30", "dev", "kbhost0"]);
    ns.ok("ip", &["link", "set", "kbhost0", "up"]);
    outside.ok("ip", &["addr", "add", "198.51.100.2/30", "dev", "eth0"]);
    outside.ok("ip", &["link", "set", "eth0", "up"]);
    let ping = "ping -c 1 -W 2 198.51.100.2 >/dev/null && echo reached || echo blocked";
    assert_eq!(
        kiln_in(&ns, &env, &["run", "--rm", "busybox", "sh", "-c", ping]),
        "reached\n"
    );
    // Another kiln network still is isolated.
    kiln_in(&ns, &env, &["network", "create", "n1"]);
    kiln_in(
        &ns,
        &env,
        &[
            "run",
            "-d",
            "--name",
            "peer",
            "--network",
            "n1",
            "busybox",
            "sleep",
            "60",
        ],
    );
    let v: serde_json::Value =
        serde_json::from_str(&kiln_in(&ns, &env, &["inspect", "peer"])).expect("json");
    let peer = v[0]["NetworkSettings"]["IPAddress"]
        .as_str()
        .expect("ip")
        .to_string();
    let ping = format!("ping -c 1 -W 1 {peer} >/dev/null && echo reached || echo blocked");
    assert_eq!(
        kiln_in(&ns, &env, &["run", "--rm", "busybox", "sh", "-c", &ping]),
        "blocked\n"
    );
    kiln_in(&ns, &env, &["rm", "-f", "peer"]);
    kiln_in(&ns, &env, &["network", "rm", "n1"]);
    kiln_in(&ns, &env, &["network", "rm", "bridge"]);
}

#[test]
fn network_connect_and_disconnect_a_running_container() {
    let Some(env) = Env::serial(&SERIAL, &[]) else {
        return;
    };
    let (a, b) = (
        format!("ca{}", std::process::id()),
        format!("cb{}", std::process::id()),
    );
    env.ok(&["network", "create", &a]);
    env.ok(&["network", "create", &b]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        "one",
        "--network",
        &a,
        "busybox",
        "sleep",
        "60",
    ]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        "two",
        "--network",
        &b,
        "busybox",
        "sleep",
        "60",
    ]);
    let two_ip = env.inspect("two")["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    let ping = format!("ping -c 1 -W 1 {two_ip} >/dev/null 2>&1 && echo reached || echo not");
    // Different networks do not route to each other.
    assert_eq!(env.ok(&["exec", "one", "sh", "-c", &ping]), "not\n");
    env.ok(&["network", "connect", &b, "one"]);
    // Now `one` has eth1 on b: it reaches `two` and finds it by name.
    assert_eq!(env.ok(&["exec", "one", "sh", "-c", &ping]), "reached\n");
    let hosts = env.ok(&["exec", "one", "cat", "/etc/hosts"]);
    assert!(hosts.contains(&format!("{two_ip}\ttwo")), "{hosts}");
    let members = env.ok(&["network", "inspect", &b]);
    assert!(members.contains("\"one\""), "{members}");
    // Connecting twice is refused; disconnecting takes eth1 away again.
    assert!(
        !env.kiln(&["network", "connect", &b, "one"])
            .status
            .success()
    );
    env.ok(&["network", "disconnect", &b, "one"]);
    assert_eq!(
        env.ok(&[
            "exec",
            "one",
            "sh",
            "-c",
            "ip link show eth1 >/dev/null 2>&1 && echo up || echo gone"
        ]),
        "gone\n"
    );
    assert_eq!(env.ok(&["exec", "one", "sh", "-c", &ping]), "not\n");
    // A network in use is not pruned; an idle one is.
    let idle = format!("ci{}", std::process::id());
    env.ok(&["network", "create", &idle]);
    let out = env.ok(&["network", "prune", "-f"]);
    assert!(
        out.contains(&idle) && !out.contains(&a) && !out.contains(&b),
        "{out}"
    );
}

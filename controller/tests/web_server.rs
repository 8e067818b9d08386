//! The web server configuration the controller generates, served by a real nginx over a directory laid out the
//! way git-sync v4 lays out its volume: the repository's `.git` at the root, each checkout under
//! `.worktrees/<hash>` with a `.git` file of its own, and the published link pointing at the current checkout.
//!
//! nginx comes from the system (`scripts/provision.sh` installs Debian's `nginx-light`); set `WEBSITE_NGINX` to
//! use another binary. The test fails, rather than skips, when there is none.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use website_controller::resources::web_server_config;
use website_controller::settings::ChildConfig;

fn nginx() -> PathBuf {
    if let Some(path) = std::env::var_os("WEBSITE_NGINX") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|p| p.is_file());
    on_path.expect("nginx not found: run scripts/provision.sh (it installs Debian's nginx-light) or set WEBSITE_NGINX")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, content).expect("write");
}

/// git-sync v4's layout under `root`, with a hostile repository checked out. Returns the document root.
fn git_sync_volume(root: &Path) -> PathBuf {
    write(&root.join(".git/config"), "[remote \"origin\"]\n\turl = https://token@git.example.com/secret.git\n");
    write(&root.join(".git/HEAD"), "ref: refs/heads/main\n");
    let old = root.join(".worktrees/1111111111111111111111111111111111111111");
    write(&old.join("index.html"), "old checkout\n");
    let current = root.join(".worktrees/2222222222222222222222222222222222222222");
    write(&current.join("index.html"), "<h1>hello from the repository</h1>\n");
    write(&current.join("about/index.html"), "about\n");
    write(&current.join(".gitignore"), "*.tmp\n");
    write(&current.join(".git"), "gitdir: /git/.git/worktrees/2222222222222222222222222222222222222222\n");
    write(&current.join("sub/.git/config"), "[core]\n");
    // A repository's own symbolic links: out to the repository, to another checkout, to the container's files,
    // and one that stays inside the checkout.
    symlink("../../.git/config", current.join("config.txt")).expect("symlink");
    symlink("../1111111111111111111111111111111111111111/index.html", current.join("old.html")).expect("symlink");
    symlink("/etc/passwd", current.join("passwd.txt")).expect("symlink");
    symlink("/etc", current.join("etc")).expect("symlink");
    symlink("index.html", current.join("inside.html")).expect("symlink");
    symlink("../..", current.join("up")).expect("symlink");
    // git-sync's published link: relative, to the current worktree.
    symlink(".worktrees/2222222222222222222222222222222222222222", root.join("html")).expect("symlink");
    root.join("html")
}

struct Nginx {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_nginx(dir: &Path, config: &ChildConfig) -> Nginx {
    let conf_d = dir.join("conf.d");
    std::fs::create_dir_all(&conf_d).expect("mkdir");
    std::fs::write(conf_d.join("default.conf"), web_server_config(config)).expect("write");
    let log = dir.join("error.log");
    // What the web server image's own nginx.conf provides around the generated server block.
    let main = format!(
        "daemon off;\nmaster_process off;\nuser root;\npid {dir}/nginx.pid;\nerror_log {log} info;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n\
         fastcgi_temp_path {dir}/fastcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n\
         include {conf_d}/*.conf;\n}}\n",
        dir = dir.display(),
        log = log.display(),
        conf_d = conf_d.display(),
    );
    std::fs::write(dir.join("nginx.conf"), main).expect("write");
    let child = Command::new(nginx())
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nginx starts");
    let addr = SocketAddr::from(([127, 0, 0, 1], u16::try_from(config.web_port).expect("port")));
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nginx did not listen on {addr}: {:?}", std::fs::read_to_string(&log));
        std::thread::sleep(Duration::from_millis(20));
    }
    Nginx { child, addr, log }
}

/// The status code and body nginx answers `path` with.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: site\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let code = response.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (code, body)
}

/// nginx with the generated configuration, serving git-sync's layout of a hostile repository in a new directory.
fn serve_hostile_checkout() -> (tempfile::TempDir, Nginx) {
    let dir = tempfile::tempdir().expect("tempdir");
    let document_root = git_sync_volume(&dir.path().join("volume"));
    let config = ChildConfig {
        web_port: i32::from(free_port()),
        web_document_root: document_root.to_string_lossy().into_owned(),
        ..ChildConfig::default()
    };
    let server = start_nginx(dir.path(), &config);
    (dir, server)
}

#[test]
fn nginx_serves_the_published_checkout_and_nothing_outside_it() {
    let (_dir, server) = serve_hostile_checkout();

    let (code, body) = get(server.addr, "/");
    assert_eq!((code, body.as_str()), (200, "<h1>hello from the repository</h1>\n"), "the published index");
    assert_eq!(get(server.addr, "/about/").0, 200);
    assert_eq!(get(server.addr, "/.gitignore").0, 200, "a file merely starting with .git is content");

    let refused = [
        // The worktree's .git file, and .git directories anywhere, however the path is spelled.
        "/.git",
        "/.git/",
        "/.git/config",
        "/sub/.git/config",
        "/%2egit/config",
        "/about/../.git",
        "//.git",
        // The repository and the other checkouts, by traversal.
        "/../.git/config",
        "/../../.git/config",
        "/../1111111111111111111111111111111111111111/index.html",
        "/%2e%2e/%2e%2e/.git/config",
        // Symbolic links of the repository, wherever they point.
        "/config.txt",
        "/old.html",
        "/passwd.txt",
        "/etc/passwd",
        "/up/.git/config",
        "/up/html/index.html",
        "/inside.html",
    ];
    let mut served = Vec::new();
    for path in refused {
        let (code, body) = get(server.addr, path);
        if !(400..500).contains(&code) || body.contains("secret") || body.contains("root:") || body.contains("old") {
            served.push(format!("{path} -> {code} {body:?}"));
        }
    }
    assert!(
        served.is_empty(),
        "served what is outside the checkout:\n{}\nnginx log:\n{}",
        served.join("\n"),
        std::fs::read_to_string(&server.log).unwrap_or_default()
    );
}

#[test]
fn nginx_follows_git_sync_when_it_swaps_the_published_link() {
    let (dir, server) = serve_hostile_checkout();
    let volume = dir.path().join("volume");
    assert!(get(server.addr, "/").1.contains("hello from the repository"));
    // git-sync publishes a new commit by replacing the link atomically.
    let next = volume.join(".worktrees/3333333333333333333333333333333333333333");
    write(&next.join("index.html"), "next commit\n");
    symlink(".worktrees/3333333333333333333333333333333333333333", volume.join("html.tmp")).expect("symlink");
    std::fs::rename(volume.join("html.tmp"), volume.join("html")).expect("swap");
    assert_eq!(get(server.addr, "/"), (200, "next commit\n".to_owned()));
}

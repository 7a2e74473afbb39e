"""WebHDFS parity: the requests the product makes, sent raw to the stand-in and to a real NameNode (Hadoop
3.5's MiniDFSCluster), must get the same statuses and the same body shapes (keys; a RemoteException's
`exception` and `javaClassName`; the first line of its message, numbers aside).

Requests go out through http.client, so paths reach the servers exactly as written (`..` included:
requests would remove dot segments). Every test works in its own folder on both and removes it.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import pytest

from model_governance_devstack.webhdfs import WebHDFSStandIn

USER = "hdfs"
# FileStatus fields whose values must agree (times and inode numbers cannot)
STATUS_VALUES = ("type", "pathSuffix", "length", "owner", "group", "permission", "replication", "childrenNum", "blockSize", "storagePolicy")


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def location(self) -> str | None:
        return self.headers.get("location")

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


def send(url: str, method: str, target: str, body: bytes | None = None) -> Answer:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
        conn.request(method, target, body=body, headers=headers)
        answer = conn.getresponse()
        return Answer(answer.status, answer.read(), {k.lower(): v for k, v in answer.getheaders()})
    finally:
        conn.close()


class Server:
    """One WebHDFS server, spoken to raw: `call` sends one namenode request; `data` follows its 307."""

    def __init__(self, name: str, url: str):
        self.name, self.url = name, url

    def call(self, method: str, path: str, op: str, **params: Any) -> Answer:
        query = urlencode({"op": op, "user.name": USER, **{k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()}})
        return send(self.url, method, f"/webhdfs/v1{path}?{query}")

    def data(self, method: str, path: str, op: str, body: bytes | None = None, **params: Any) -> tuple[Answer, Answer | None]:
        first = self.call(method, path, op, **params)
        if first.status != 307:
            return first, None
        location = urlsplit(first.location)
        return first, send(f"http://{location.netloc}", method, f"{location.path}?{location.query}", body)

    def put(self, path: str, data: bytes, overwrite: bool = False) -> None:
        nn, dn = self.data("PUT", path, "CREATE", data, overwrite=overwrite)
        assert dn is not None and dn.status == 201, (self.name, nn.status, nn.body, dn and dn.body)


def first_line(message: str) -> str:
    """A message's first line with numbers, DFSClient ids and addresses made neutral."""
    line = message.split("\n", 1)[0]
    line = re.sub(r"DFSClient_\w+?_-?\d+_\d+", "DFSClient_N", line)
    return re.sub(r"\d+", "N", line)


def shape(value: Any) -> Any:
    """What must agree: keys everywhere, booleans and the FileStatus fields above by value, the
    RemoteException's classes and first message line."""
    if isinstance(value, dict):
        if "RemoteException" in value:
            remote = value["RemoteException"]
            return {"RemoteException": {"keys": sorted(remote), "exception": remote.get("exception"),
                                        "javaClassName": remote.get("javaClassName"), "message": first_line(remote.get("message", ""))}}
        if "pathSuffix" in value and "type" in value:  # a FileStatus
            return {k: (value[k] if k in STATUS_VALUES else type(value[k]).__name__) for k in sorted(value)}
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [shape(v) for v in value]
    if isinstance(value, bool):
        return value
    return type(value).__name__


def looks(answer: Answer | None) -> Any:
    if answer is None:
        return None
    body = answer.json if "json" in answer.content_type else f"{len(answer.body)} bytes"
    return {"status": answer.status, "content-type": answer.content_type, "body": shape(body) if isinstance(body, (dict, list)) else body,
            "location": bool(answer.location)}


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    with WebHDFSStandIn(tmp_path_factory.mktemp("webhdfs-parity"), standby_hosts=("127.0.0.2",)) as server:
        yield server


@pytest.fixture
def servers(stand_in, real_hdfs):
    """The stand-in and the real NameNode, each with a fresh folder /parity-<id> (removed afterwards)."""
    folder = f"/parity-{uuid.uuid4().hex[:8]}"
    pair = [Server("stand-in", stand_in.url), Server("real", "http://{}:{}".format(*real_hdfs.namenodes[0]))]
    for server in pair:
        assert server.call("PUT", folder, "MKDIRS").status == 200
    yield pair, folder
    for server in pair:
        server.call("DELETE", folder, "DELETE", recursive=True)


def same(pair, ask) -> list[Any]:
    """ask(server) on both; the shapes must be equal. Returns the stand-in's and the real answers' shapes."""
    got = [ask(server) for server in pair]
    shapes = [tuple(looks(a) for a in g) if isinstance(g, tuple) else looks(g) for g in got]
    if os.environ.get("PARITY_COLLECT"):  # development: print every difference, stop at none
        if shapes[0] != shapes[1]:
            print(f"\nDIFF {ask.__code__.co_firstlineno}\n  stand-in: {shapes[0]}\n  real:     {shapes[1]}")
        return got
    assert shapes[0] == shapes[1], f"\nstand-in: {shapes[0]}\nreal:     {shapes[1]}"
    return got


# -- the namespace -------------------------------------------------------------------------------------------
def test_mkdirs_getfilestatus_liststatus(servers):
    pair, d = servers
    same(pair, lambda s: s.call("PUT", f"{d}/a/b", "MKDIRS"))
    same(pair, lambda s: s.call("PUT", f"{d}/a/b", "MKDIRS"))  # again: true
    same(pair, lambda s: s.call("PUT", f"{d}/a", "MKDIRS", permission="750"))
    same(pair, lambda s: s.call("GET", f"{d}/a", "GETFILESTATUS"))
    for server in pair:
        server.put(f"{d}/a/f.txt", b"hello")
    same(pair, lambda s: s.call("GET", f"{d}/a", "LISTSTATUS"))
    same(pair, lambda s: s.call("GET", f"{d}/a/f.txt", "LISTSTATUS"))  # a file lists itself, suffix ""
    same(pair, lambda s: s.call("GET", f"{d}/a/f.txt", "GETFILESTATUS"))
    same(pair, lambda s: s.call("PUT", f"{d}/a/f.txt/x", "MKDIRS"))  # under a file
    same(pair, lambda s: s.call("PUT", f"{d}/a/f.txt", "MKDIRS"))  # onto a file
    same(pair, lambda s: s.call("GET", d, "GETCONTENTSUMMARY"))
    same(pair, lambda s: s.call("GET", "/", "GETHOMEDIRECTORY"))


def test_missing_paths(servers):
    pair, d = servers
    for op in ("GETFILESTATUS", "LISTSTATUS", "OPEN", "GETFILECHECKSUM", "GETCONTENTSUMMARY"):
        same(pair, lambda s: s.call("GET", f"{d}/missing", op))
    same(pair, lambda s: s.call("DELETE", f"{d}/missing", "DELETE", recursive=True))
    same(pair, lambda s: s.call("PUT", f"{d}/missing", "RENAME", destination=f"{d}/other"))


# -- data: CREATE and OPEN in two steps ----------------------------------------------------------------------
def test_create_two_step_and_overwrite(servers):
    pair, d = servers
    nn, dn = same(pair, lambda s: s.data("PUT", f"{d}/new/f.bin", "CREATE", b"x" * 1000, overwrite=False))[1]
    assert "namenoderpcaddress=" in nn.location and "overwrite=false" in nn.location
    assert dn.body == b"" and dn.location.startswith(("hdfs://", "webhdfs://"))
    got = same(pair, lambda s: s.data("PUT", f"{d}/new/f.bin", "CREATE", b"y" * 10, overwrite=False))  # NN 307, DN 403
    for _, refusal in got:  # the DataNode relays the NameNode's error with its stack trace in the message
        assert "\n\tat org.apache.hadoop." in refusal.json["RemoteException"]["message"]
    same(pair, lambda s: s.data("PUT", f"{d}/new/f.bin", "CREATE", b"z" * 20, overwrite=True))
    same(pair, lambda s: s.call("GET", f"{d}/new/f.bin", "GETFILESTATUS"))
    same(pair, lambda s: s.data("PUT", f"{d}/new", "CREATE", b"z", overwrite=True))  # onto a folder
    same(pair, lambda s: s.data("PUT", f"{d}/new/f.bin/under", "CREATE", b"z"))  # under a file
    same(pair, lambda s: s.data("PUT", f"{d}/empty", "CREATE", b""))


def test_open_whole_and_ranges(servers):
    pair, d = servers
    data = bytes(range(256)) * 600
    for server in pair:
        server.put(f"{d}/f.bin", data)
    got = same(pair, lambda s: s.data("GET", f"{d}/f.bin", "OPEN"))
    assert got[0][1].body == got[1][1].body == data
    same(pair, lambda s: s.data("GET", f"{d}/f.bin", "OPEN", offset=1000, length=50))
    same(pair, lambda s: s.data("GET", f"{d}/f.bin", "OPEN", offset=len(data)))
    same(pair, lambda s: s.data("GET", d, "OPEN"))  # a folder


def test_getfilechecksum(servers):
    pair, d = servers
    for size in (0, 3, 513, 70_000):
        for server in pair:
            server.put(f"{d}/c{size}.bin", bytes(i % 251 for i in range(size)))
        got = same(pair, lambda s: s.data("GET", f"{d}/c{size}.bin", "GETFILECHECKSUM"))
        assert got[0][1].json == got[1][1].json, size  # the same algorithm and the same bytes


# -- RENAME and DELETE ---------------------------------------------------------------------------------------
def test_rename(servers):
    pair, d = servers
    for server in pair:
        for name in ("f.txt", "g.txt", "h.txt"):
            server.put(f"{d}/{name}", name.encode())
        server.call("PUT", f"{d}/folder", "MKDIRS")
    same(pair, lambda s: s.call("PUT", f"{d}/g.txt", "RENAME", destination=f"{d}/f.txt"))  # onto a file: false
    same(pair, lambda s: s.call("PUT", f"{d}/g.txt", "RENAME", destination=f"{d}/nowhere/g.txt"))  # no parent
    same(pair, lambda s: s.call("PUT", f"{d}/g.txt", "RENAME", destination=f"{d}/folder"))  # into the folder
    same(pair, lambda s: s.call("GET", f"{d}/folder", "LISTSTATUS"))
    same(pair, lambda s: s.call("PUT", f"{d}/f.txt", "RENAME", destination="q.txt"))  # relative: 400
    same(pair, lambda s: s.call("PUT", f"{d}/f.txt", "RENAME", destination=f"{d}/folder/../f2.txt"))  # normalised
    same(pair, lambda s: s.call("GET", f"{d}/f2.txt", "GETFILESTATUS"))
    same(pair, lambda s: s.call("PUT", f"{d}/folder", "RENAME", destination=f"{d}/folder/inside"))  # into itself
    same(pair, lambda s: s.call("PUT", f"{d}/h.txt", "RENAME", destination=f"{d}/h.txt"))  # onto itself


def test_delete(servers):
    pair, d = servers
    for server in pair:
        server.put(f"{d}/x/f.txt", b"f")
    same(pair, lambda s: s.call("DELETE", f"{d}/x", "DELETE", recursive=False))  # not empty
    same(pair, lambda s: s.call("DELETE", f"{d}/x/f.txt", "DELETE"))
    same(pair, lambda s: s.call("DELETE", f"{d}/x", "DELETE", recursive=True))
    same(pair, lambda s: s.call("DELETE", f"{d}/x", "DELETE", recursive=True))  # gone: false


# -- paths and parameters --------------------------------------------------------------------------------------
def test_dot_segments_and_odd_paths(servers):
    """A raw `..` is a name to the NameNode: reads find nothing (404), writes refuse it (400)."""
    pair, d = servers
    for server in pair:
        server.put(f"{d}/x/f.txt", b"f")
    for path in (f"{d}/x/../x/f.txt", f"{d}/x/./f.txt", f"{d}/x/%2E%2E/x/f.txt", f"{d}/x//f.txt"):
        for op in ("GETFILESTATUS", "LISTSTATUS", "OPEN"):
            same(pair, lambda s: s.call("GET", path, op))
    same(pair, lambda s: s.data("PUT", f"{d}/x/../y.txt", "CREATE", b"y"))
    same(pair, lambda s: s.call("PUT", f"{d}/x/../z", "MKDIRS"))
    same(pair, lambda s: s.call("PUT", f"{d}/x/./z", "MKDIRS"))
    same(pair, lambda s: s.call("DELETE", f"{d}/x/../x", "DELETE", recursive=True))
    same(pair, lambda s: s.call("PUT", f"{d}/x/../x/f.txt", "RENAME", destination=f"{d}/g.txt"))
    for path in (f"{d}/x/../x/f.txt", f"{d}/x//f.txt", d):
        same(pair, lambda s: s.data("GET", path, "GETFILECHECKSUM"))
    same(pair, lambda s: s.call("GET", f"{d}/x/../x", "GETCONTENTSUMMARY"))
    same(pair, lambda s: s.call("POST", f"{d}/x/../x/f.txt", "APPEND"))
    same(pair, lambda s: s.call("POST", f"{d}/missing", "APPEND"))
    same(pair, lambda s: s.call("PUT", f"{d}/a:b", "MKDIRS"))
    same(pair, lambda s: s.data("PUT", f"{d}/a:b", "CREATE", b"c"))
    same(pair, lambda s: s.call("PUT", f"{d}/x/f.txt", "RENAME", destination=f"{d}/a:b"))


def test_parameters(servers):
    pair, d = servers
    for server in pair:
        server.put(f"{d}/f.txt", b"f")
    same(pair, lambda s: s.call("GET", f"{d}/x", "NOPE"))
    same(pair, lambda s: s.call("PUT", f"{d}/x", "NOPE"))
    same(pair, lambda s: send(s.url, "PUT", f"/webhdfs/v1{d}/x?user.name=hdfs"))  # no op
    same(pair, lambda s: s.call("PUT", f"{d}/x", "MKDIRS", permission="999"))
    for name, value in (("offset", "-1"), ("offset", "x"), ("length", "x")):
        same(pair, lambda s: s.call("GET", f"{d}/f.txt", "OPEN", **{name: value}))
    for name, value in (("replication", "x"), ("overwrite", "maybe"), ("blocksize", "x")):
        same(pair, lambda s: s.call("PUT", f"{d}/g.txt", "CREATE", **{name: value}))
    same(pair, lambda s: send(s.url, "GET", f"/webhdfs/v1{d}/f.txt?op=GETFILESTATUS"))  # no user.name


def test_a_file_being_written(servers):
    """Length 0 while its writer has not closed it; a second CREATE is AlreadyBeingCreatedException."""
    pair, d = servers
    writers = []
    for server in pair:
        first = server.call("PUT", f"{d}/slow.bin", "CREATE", overwrite=False)
        location = urlsplit(first.location)
        conn = http.client.HTTPConnection(location.hostname, location.port, timeout=60)
        conn.putrequest("PUT", f"{location.path}?{location.query}")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.putheader("Content-Type", "application/octet-stream")
        conn.endheaders()
        conn.send(b"%x\r\n%s\r\n" % (100, b"a" * 100))
        writers.append(conn)
    try:
        for server in pair:
            deadline = time.monotonic() + 10
            while server.call("GET", f"{d}/slow.bin", "GETFILESTATUS").status != 200 and time.monotonic() < deadline:
                time.sleep(0.05)
        same(pair, lambda s: s.call("GET", f"{d}/slow.bin", "GETFILESTATUS"))
        same(pair, lambda s: s.call("GET", d, "LISTSTATUS"))
        same(pair, lambda s: s.data("GET", f"{d}/slow.bin", "OPEN"))  # what the packets acknowledged: none
        same(pair, lambda s: s.data("PUT", f"{d}/slow.bin", "CREATE", b"other", overwrite=False))
        same(pair, lambda s: s.data("POST", f"{d}/slow.bin", "APPEND", b"more"))
        same(pair, lambda s: s.call("PUT", f"{d}/g.bin", "RENAME", destination=f"{d}/slow.bin"))
    finally:
        answers = []
        for conn in writers:
            conn.send(b"0\r\n\r\n")
            answers.append(conn.getresponse().status)
            conn.close()
    assert answers == [201, 201]
    same(pair, lambda s: s.call("GET", f"{d}/slow.bin", "GETFILESTATUS"))


# -- HA: what a standby NameNode answers ---------------------------------------------------------------------
def test_standby_namenode(stand_in, real_hdfs_ha):
    states = real_hdfs_ha.namenode_states
    host, port = real_hdfs_ha.namenodes[states.index("standby")]
    active = "http://{}:{}".format(*real_hdfs_ha.namenodes[states.index("active")])
    pair = [Server("stand-in", f"http://127.0.0.2:{stand_in.port}"), Server("real", f"http://{host}:{port}")]
    folder = f"/parity-{uuid.uuid4().hex[:8]}"
    Server("stand-in active", stand_in.url).put(f"{folder}/f.txt", b"f")
    Server("real active", active).put(f"{folder}/f.txt", b"f")
    for op in ("GETFILESTATUS", "LISTSTATUS", "OPEN", "GETFILECHECKSUM"):
        same(pair, lambda s: s.call("GET", f"{folder}/f.txt", op))
    same(pair, lambda s: s.call("PUT", f"{folder}/d", "MKDIRS"))
    same(pair, lambda s: s.data("PUT", f"{folder}/g.txt", "CREATE", b"g"))  # NN 307; the DataNode refuses
    same(pair, lambda s: s.call("PUT", f"{folder}/f.txt", "RENAME", destination=f"{folder}/h.txt"))
    same(pair, lambda s: s.call("DELETE", folder, "DELETE", recursive=True))
    Server("stand-in active", stand_in.url).call("DELETE", folder, "DELETE", recursive=True)
    Server("real active", active).call("DELETE", folder, "DELETE", recursive=True)

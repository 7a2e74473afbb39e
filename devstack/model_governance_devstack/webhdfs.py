"""A stand-in for Hadoop WebHDFS: a namenode and a datanode (two servers) speaking the REST contract.

The file system lives on disk under `state_dir/fs` (owners and permissions in `state_dir/meta.json`), so a
restart with the same state_dir finds it again. Behaviour follows Hadoop's NamenodeWebHdfsMethods and the
datanode's WebHdfsHandler: the namenode redirects data ops (307) to the datanode, errors are
`{"RemoteException": ...}` with Hadoop's statuses and messages, RENAME keeps the old rename semantics.
Standby namenodes (other loopback addresses, same port) answer StandbyException so HA clients fail over.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import socket
import stat
import struct
import threading
import time
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from model_governance_devstack.base import StandInHandler, StandInServer

DATA_CHUNK = 1024 * 1024  # bodies and downloads move in pieces this big, never whole
BLOCK_SIZE = 128 * 1024 * 1024
PACKET_DATA = 126 * 512  # a DFSClient packet's payload: readers of a file being written see whole packets
REPLICATION = 1  # one datanode
GROUP = "supergroup"
ANONYMOUS = "dr.who"  # Hadoop's static web user when user.name is missing
RPC_PORT = 8020

# The op enums per HTTP method; ops in them the stand-in does not serve answer UnsupportedOperationException.
OPS = {
    "GET": ("GetOpParam", "OPEN GETFILESTATUS LISTSTATUS GETCONTENTSUMMARY GETFILECHECKSUM GETHOMEDIRECTORY "
            "GETDELEGATIONTOKEN GETXATTRS LISTXATTRS GETACLSTATUS GETTRASHROOT CHECKACCESS LISTSTATUS_BATCH "
            "GETQUOTAUSAGE GETFILEBLOCKLOCATIONS GETSERVERDEFAULTS GETSTORAGEPOLICY GETSNAPSHOTDIFF"),
    "PUT": ("PutOpParam", "CREATE MKDIRS RENAME CREATESYMLINK SETREPLICATION SETOWNER SETPERMISSION SETTIMES "
            "RENEWDELEGATIONTOKEN CANCELDELEGATIONTOKEN MODIFYACLENTRIES REMOVEACLENTRIES REMOVEDEFAULTACL "
            "REMOVEACL SETACL SETXATTR REMOVEXATTR CREATESNAPSHOT RENAMESNAPSHOT ALLOWSNAPSHOT DISALLOWSNAPSHOT "
            "SETSTORAGEPOLICY SETQUOTA"),
    "POST": ("PostOpParam", "APPEND CONCAT TRUNCATE UNSETSTORAGEPOLICY"),
    "DELETE": ("DeleteOpParam", "DELETE DELETESNAPSHOT"),
}
JAVA_PACKAGES = {
    "java.io": "FileNotFoundException IOException EOFException",
    "java.lang": "SecurityException IllegalArgumentException UnsupportedOperationException RuntimeException",
    "org.apache.hadoop.fs": "FileAlreadyExistsException ParentNotDirectoryException PathIsNotEmptyDirectoryException InvalidPathException",
    "org.apache.hadoop.ipc": "StandbyException RetriableException",
    "org.apache.hadoop.hdfs.protocol": "AlreadyBeingCreatedException",
}
JAVA_CLASSES = {name: f"{package}.{name}" for package, names in JAVA_PACKAGES.items() for name in names.split()}
FAULT_EXCEPTIONS = {400: "IllegalArgumentException", 401: "SecurityException", 403: "IOException",
                    404: "FileNotFoundException", 503: "RetriableException"}


class RemoteError(Exception):
    """An answer in WebHDFS's error shape; the status is what Hadoop's ExceptionHandler maps the class to."""

    def __init__(self, status: int, exception: str, message: str):
        super().__init__(message)
        self.status, self.exception, self.message = status, exception, message

    def payload(self) -> dict[str, Any]:
        return {"RemoteException": {"exception": self.exception, "javaClassName": JAVA_CLASSES.get(self.exception, f"java.io.{self.exception}"), "message": self.message}}


class _Abort(Exception):
    """The connection was dropped on purpose (a fault) or by the client: send nothing more."""


def _bad_param(name: str, why: str) -> RemoteError:
    return RemoteError(400, "IllegalArgumentException", f'Invalid value for webhdfs parameter "{name}": java.lang.IllegalArgumentException: {why}')


def _trace(where: str) -> str:
    """A DataNode relays the NameNode's RPC error with its server stack trace in the message; a line of it."""
    return f"\n\tat org.apache.hadoop.hdfs.server.namenode.{where}\n\tat org.apache.hadoop.ipc.Server$Handler.run(Server.java)"


def valid_name(path: str) -> bool:
    """DFSUtil.isValidName: no '.', '..' or ':' component, no empty one inside ('//')."""
    parts = path.split("/")[1:]
    return all(p not in (".", "..") and ":" not in p and (p or i == len(parts) - 1) for i, p in enumerate(parts))


def has_dot_segment(path: str) -> bool:
    return any(part in (".", "..") for part in path.split("/"))


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), HDFS's default dfs.checksum.type."""
    crc, table = 0xFFFFFFFF, CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _output_buffer(data: bytes) -> bytes:
    """What Hadoop's DataOutputBuffer.getData() hands on: the backing array (32 bytes, doubled as needed),
    zeros after the data. HDFS digests and serialises that, not just the bytes written."""
    capacity = 32
    while capacity < len(data):
        capacity *= 2
    return data + bytes(capacity - len(data))


def file_checksum(path: Path, block_size: int) -> dict[str, Any]:
    """HDFS's MD5MD5CRC32C file checksum, as a real NameNode answers it: CRC32C per 512 bytes, MD5 of those per
    block, MD5 of the block MD5s (with DataOutputBuffer's zero padding); an empty file is `…of-0CRC32`."""
    block_md5s = []
    with path.open("rb") as handle:
        while True:
            block, got = hashlib.md5(), 0
            while got < block_size and (piece := handle.read(min(DATA_CHUNK, block_size - got))):
                got += len(piece)
                block.update(b"".join(crc32c(piece[i:i + 512]).to_bytes(4, "big") for i in range(0, len(piece), 512)))
            if not got:
                break
            block_md5s.append(block.digest())
    bytes_per_crc = 512 if block_md5s else 0
    crc_per_block = block_size // 512 if len(block_md5s) > 1 else 0  # HDFS reports 0 for one-block files
    kind = "CRC32C" if block_md5s else "CRC32"
    raw = struct.pack(">iq", bytes_per_crc, crc_per_block) + hashlib.md5(_output_buffer(b"".join(block_md5s))).digest()
    return {"algorithm": f"MD5-of-{crc_per_block}MD5-of-{bytes_per_crc}{kind}", "bytes": _output_buffer(raw).hex(), "length": len(raw)}


class Writer:
    """A DFSClient holding a file's lease (the DataNode makes one per CREATE request)."""

    _ids = iter(range(1, 1 << 62))

    def __init__(self, host: str):
        self.host, self.received = host, 0
        self.name = f"DFSClient_NONMAPREDUCE_-{abs(hash((id(self), time.time()))) % 2**31}_{next(self._ids)}"

    def refusal(self, what: str, path: str, other: "Writer") -> RemoteError:
        return RemoteError(403, "AlreadyBeingCreatedException", f"Failed to {what} {path} for {other.name} on {other.host} "
                           f"because this file lease is currently owned by {self.name} on {self.host}")


class Namespace:
    """The file tree on disk plus what a local file system cannot hold (owner, group, permission, replication)."""

    def __init__(self, state_dir: Path):
        self.root = state_dir / "fs"
        self.root.mkdir(parents=True, exist_ok=True)
        self.meta_file = state_dir / "meta.json"
        self.meta: dict[str, dict[str, Any]] = json.loads(self.meta_file.read_text()) if self.meta_file.exists() else {}
        self.lock = threading.RLock()  # namespace changes are serialised, like the namenode's write lock
        self.writing: dict[str, Writer] = {}  # files under construction: their lease holder

    def local(self, path: str) -> Path:
        if has_dot_segment(path) or "\0" in path:  # never a way out of the state folder
            raise RemoteError(400, "InvalidPathException", f"Invalid path name {path}")
        return self.root / path.lstrip("/")

    def _save_meta(self) -> None:
        tmp = self.meta_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.meta))
        os.replace(tmp, self.meta_file)

    def status(self, path: str, suffix: str = "") -> dict[str, Any] | None:
        """A FileStatus, or None if the path (or a parent) does not exist."""
        local = self.local(path)
        try:
            st = local.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        is_dir, meta = stat.S_ISDIR(st.st_mode), self.meta.get(path, {})
        mtime = int(st.st_mtime * 1000)
        return {
            "accessTime": 0 if is_dir else mtime, "blockSize": 0 if is_dir else meta.get("blockSize", BLOCK_SIZE),
            "childrenNum": len(os.listdir(local)) if is_dir else 0, "fileId": st.st_ino, "group": meta.get("group", GROUP),
            "length": 0 if is_dir or path in self.writing else st.st_size, "modificationTime": mtime, "owner": meta.get("owner", "hdfs"),
            "pathSuffix": suffix, "permission": meta.get("permission", "755" if is_dir else "644"),
            "replication": 0 if is_dir else meta.get("replication", REPLICATION), "storagePolicy": 0,
            "type": "DIRECTORY" if is_dir else "FILE",
        }

    def file(self, path: str) -> Path:
        """The local file behind an HDFS file, as the namenode's getBlockLocations checks it."""
        local = self.local(path)
        if not local.exists():
            raise RemoteError(404, "FileNotFoundException", f"File does not exist: {path}")
        if local.is_dir():
            raise RemoteError(404, "FileNotFoundException", f"Path is not a file: {path}")
        return local

    def _make_parents(self, path: str, user: str) -> None:
        """Create missing ancestors (755, owned by the caller); a file on the way is ParentNotDirectoryException."""
        current = ""
        for name in path.strip("/").split("/")[:-1]:
            current += "/" + name
            local = self.local(current)
            if local.is_dir():
                continue
            if local.exists():
                raise RemoteError(403, "ParentNotDirectoryException", f"{current} (is not a directory)")
            local.mkdir()
            self.meta[current] = {"owner": user, "group": GROUP, "permission": "755"}

    @staticmethod
    def check_name(path: str) -> None:
        if ":" in path:  # DFSUtil.isValidName; '.' and '..' never get this far
            raise RemoteError(400, "InvalidPathException", f"Invalid path name {path}")

    def mkdirs(self, path: str, permission: str, user: str) -> None:
        self.check_name(path)
        with self.lock:
            local = self.local(path)
            if local.is_dir():
                return
            if local.exists():
                raise RemoteError(403, "FileAlreadyExistsException", f"Path is not a directory: {path}")
            self._make_parents(path, user)
            local.mkdir()
            self.meta[path] = {"owner": user, "group": GROUP, "permission": permission}
            self._save_meta()

    def create(self, path: str, overwrite: bool, meta: dict[str, Any], client: str) -> tuple[Any, "Writer"]:
        """Open a new file for writing (an overwritten one is replaced by a new inode, as in HDFS). Until its
        writer closes it, the file lists with length 0 and a second CREATE or APPEND is refused with
        AlreadyBeingCreatedException (its lease is held), as a NameNode does."""
        self.check_name(path)
        writer = Writer(client)
        with self.lock:
            local = self.local(path)
            if local.is_dir():
                raise RemoteError(403, "FileAlreadyExistsException", f"{path} already exists as a directory")
            holder = self.writing.get(path)
            if holder and not overwrite:
                raise holder.refusal("CREATE_FILE", path, writer)
            if local.exists():
                if not overwrite:
                    raise RemoteError(403, "FileAlreadyExistsException", f"{path} for client {client} already exists")
                local.unlink()
            self._make_parents(path, meta["owner"])
            handle = local.open("xb")
            self.meta[path] = meta
            self.writing[path] = writer
            self._save_meta()
            return handle, writer

    def check_not_writing(self, path: str, client: str) -> None:
        with self.lock:
            if (holder := self.writing.get(path)) is not None:
                raise holder.refusal("APPEND_FILE", path, Writer(client))

    def closed(self, path: str, writer: "Writer") -> None:
        with self.lock:
            if self.writing.get(path) is writer:
                del self.writing[path]

    def visible_size(self, path: str, size: int) -> int:
        """The bytes a reader gets: all of a closed file; the acknowledged packets of one being written."""
        writer = self.writing.get(path)
        return size if writer is None else min(size, writer.received - writer.received % PACKET_DATA)

    def delete(self, path: str, recursive: bool) -> bool:
        if has_dot_segment(path):  # a name no file has
            return False
        with self.lock:
            local = self.local(path)
            if not os.path.lexists(local):
                return False
            if local.is_dir() and not recursive and any(local.iterdir()):
                raise RemoteError(403, "PathIsNotEmptyDirectoryException", f"`{path} is non empty': Directory is not empty")
            if path == "/":
                return False  # the root is never deleted
            if local.is_dir():
                shutil.rmtree(local)
            else:
                local.unlink()
            self.meta = {k: v for k, v in self.meta.items() if k != path and not k.startswith(path + "/")}
            self.writing = {k: v for k, v in self.writing.items() if k != path and not k.startswith(path + "/")}
            self._save_meta()
            return True

    def rename(self, src: str, dst: str) -> bool:
        """Hadoop's old rename: onto a folder moves src inside it; an existing target or a missing parent is false."""
        if not valid_name(dst):
            raise RemoteError(400, "InvalidPathException", f"Invalid path name Invalid file name: {dst}")
        if has_dot_segment(src):  # a name no file has
            return False
        with self.lock:
            if self.local(dst).is_dir():
                dst = dst.rstrip("/") + "/" + src.rsplit("/", 1)[-1]
            if src == "/" or not os.path.lexists(self.local(src)):
                return False
            if dst == src:
                return True
            target = self.local(dst)
            if dst.startswith(src + "/") or os.path.lexists(target) or not target.parent.is_dir():
                return False
            os.rename(self.local(src), target)
            moved = {k: v for k, v in self.meta.items() if k == src or k.startswith(src + "/")}
            for key, value in moved.items():
                del self.meta[key]
                self.meta[dst + key[len(src):]] = value
            self._save_meta()
            return True


class _Handler(StandInHandler):
    """What the namenode and datanode share: path and parameter parsing, streamed bodies, error answers."""

    routes = [(m, r"/webhdfs/v1(?P<path>/.*)?", "webhdfs") for m in ("GET", "PUT", "POST", "DELETE")]
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall each
    stand_in: "WebHDFSStandIn"

    def body(self) -> bytes:
        return b""  # base drains bodies whole before dispatch; here an op streams its own (see body_chunks)

    def webhdfs(self, path: str | None) -> None:
        self.stand_in = self.server.stand_in  # type: ignore[attr-defined]
        self._body_state = "unread"
        try:
            self.raw_path = unquote(path or "/")
            self.hdfs_path = self.normalize(self.raw_path)
            self.serve(self.op())
        except RemoteError as err:
            self.send_json(err.status, err.payload())
        except (_Abort, ConnectionError):
            self.close_connection = True
            return
        except Exception as err:  # a bug or a disk error: answer as Hadoop does for a RuntimeException
            self.close_connection = True
            self.send_json(500, RemoteError(500, "RuntimeException", f"{type(err).__name__}: {err}").payload())
            return
        self.drain()

    def not_found(self) -> None:
        self.close_connection = True  # a body the base handler did not read may follow
        super().not_found()

    def method_not_allowed(self, allowed: list[str]) -> None:
        self.close_connection = True
        super().method_not_allowed(allowed)

    @staticmethod
    def normalize(path: str) -> str:
        """An absolute path without empty segments. '.' and '..' stay: to a NameNode they are names, which
        the read ops do not find (404) and the write ops refuse (InvalidPathException), checked per op."""
        path = "/" + "/".join(part for part in path.split("/") if part)
        if "\0" in path:
            raise RemoteError(400, "InvalidPathException", f"Invalid path name {path}")
        return path

    def op(self) -> str:
        raw = self.param("op")
        enum, names = OPS[self.command]
        if raw is None:
            raise RemoteError(400, "UnsupportedOperationException", "op=NULL  is not supported")
        if raw.upper() not in names.split():
            raise _bad_param("op", f"{raw} is not a valid {self.command} operation.")
        return raw.upper()

    @property
    def user(self) -> str:
        return self.param("doas") or self.param("user.name") or ANONYMOUS

    def bool_param(self, name: str) -> bool:
        value = self.param(name, "false")
        if value.lower() not in ("true", "false"):
            raise _bad_param(name, f'Failed to parse "{value}" to Boolean.')
        return value.lower() == "true"

    INT_KINDS = {"offset": "long integer", "length": "long integer", "blocksize": "long integer",
                 "permission": "short integer", "replication": "short integer"}

    def int_param(self, name: str, default: int | None, base: int = 10, minimum: int | None = None) -> int | None:
        value = self.param(name)
        if value in (None, "", "null"):
            return default
        try:
            number = int(value, base)
        except ValueError:
            kind = self.INT_KINDS.get(name, "integer")
            raise _bad_param(name, f'Failed to parse "{value}" as a radix-{base} {kind}.') from None
        if minimum is not None and number < minimum:
            raise _bad_param(name, f"Invalid parameter range: {name} = {number} < {minimum}")
        return number

    def body_chunks(self) -> Iterator[bytes]:
        """The request body in pieces, from a Content-Length or a `Transfer-Encoding: chunked` request."""
        self._body_state = "reading"
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while (size := int(self._line().split(b";")[0], 16)) > 0:
                yield from self._exactly(size)
                self._line()  # the CRLF after each chunk
            while self._line().strip():  # trailers
                pass
        else:
            yield from self._exactly(int(self.headers.get("Content-Length") or 0))
        self._body_state = "read"

    def _line(self) -> bytes:
        line = self.rfile.readline(65537)
        if not line:
            raise ConnectionError("request body ended early")
        return line

    def _exactly(self, size: int) -> Iterator[bytes]:
        while size > 0:
            piece = self.rfile.read(min(size, DATA_CHUNK))
            if not piece:
                raise ConnectionError("request body ended early")
            size -= len(piece)
            yield piece

    def drain(self) -> None:
        """Read what an op left of the body so keep-alive stays in step; a half-read body closes instead."""
        if self._body_state == "unread":
            try:
                for _ in self.body_chunks():
                    pass
            except (ConnectionError, ValueError):
                self.close_connection = True
        elif self._body_state != "read":
            self.close_connection = True

    def serve(self, op: str) -> None:
        raise NotImplementedError

    def check_params(self) -> None:
        """The namenode parses every parameter it knows before the op runs (Jersey's @QueryParam)."""
        for name in ("offset", "length"):
            self.int_param(name, None, minimum=0)
        self.int_param("blocksize", None)
        self.int_param("replication", None)
        self.int_param("permission", None, 8)
        for name in ("overwrite", "recursive", "noredirect", "createparent"):
            self.bool_param(name)

    def redirect(self, namenode_host: str | None = None) -> None:
        """307 to the datanode with every op param, the effective user and the namenode's RPC address."""
        params = [(k, v) for k, v in parse_qsl(urlsplit(self.path).query, keep_blank_values=True) if k != "user.name"]
        params += [("user.name", self.user), ("namenoderpcaddress", f"{namenode_host or self.stand_in.host}:{RPC_PORT}")]
        location = f"{self.stand_in.datanode_url}/webhdfs/v1{quote(self.hdfs_path)}?{urlencode(params, safe=':')}"
        if self.bool_param("noredirect"):
            return self.send_json(200, {"Location": location})
        self.send_bytes(307, b"", None, {"Content-Type": "application/octet-stream", "Location": location})


class _NamenodeHandler(_Handler):
    def serve(self, op: str) -> None:
        self.stand_in.take_fault(op)
        ns, path, raw = self.stand_in.namespace, self.hdfs_path, self.raw_path
        self.check_params()
        if op in ("CREATE", "OPEN", "APPEND", "GETFILECHECKSUM") and not valid_name(raw):
            raise RemoteError(400, "InvalidPathException", f"Invalid path name {raw}")
        if op == "MKDIRS" and not valid_name(raw):
            raise RemoteError(400, "InvalidPathException", f"Invalid path name Invalid file name: {raw}")
        if op in ("OPEN", "APPEND", "GETFILECHECKSUM"):  # the namenode looks the file up before it redirects
            status = ns.status(path)
            if status is None:
                raise RemoteError(404, "FileNotFoundException", f"File {path} not found.")
            if op == "OPEN":
                offset = self.int_param("offset", 0, minimum=0)
                self.int_param("length", None, minimum=0)
                if offset >= status["length"] > 0:
                    raise RemoteError(403, "IOException", f"Offset={offset} out of the range [0, {status['length']}); OPEN, path={path}")
        if op in ("CREATE", "OPEN", "APPEND", "GETFILECHECKSUM"):
            return self.redirect()
        if op == "GETFILESTATUS":
            status = None if has_dot_segment(path) else ns.status(path)  # '..' is a name no file has
            if status is None:
                raise RemoteError(404, "FileNotFoundException", f"File does not exist: {path}")
            return self.send_json(200, {"FileStatus": status})
        if op == "LISTSTATUS":
            return self.send_json(200, {"FileStatuses": {"FileStatus": self.list_status(path)}})
        if op == "GETCONTENTSUMMARY":
            return self.send_json(200, {"ContentSummary": self.content_summary(path)})
        if op == "GETHOMEDIRECTORY":
            return self.send_json(200, {"Path": f"/user/{self.user}"})
        if op == "MKDIRS":
            ns.mkdirs(path, "%o" % self.int_param("permission", 0o755, 8), self.user)
            return self.send_json(200, {"boolean": True})
        if op == "RENAME":
            dst = self.param("destination") or ""
            if not dst.startswith("/"):
                raise _bad_param("destination", f'Invalid parameter value: destination = "{dst}" is not an absolute path.')
            return self.send_json(200, {"boolean": ns.rename(path, posixpath.normpath(self.normalize(dst)))})  # parse_qs decoded it
        if op == "DELETE":
            return self.send_json(200, {"boolean": ns.delete(path, self.bool_param("recursive"))})
        raise RemoteError(400, "UnsupportedOperationException", f"op={op} is not supported")

    def list_status(self, path: str) -> list[dict[str, Any]]:
        ns = self.stand_in.namespace
        status = None if has_dot_segment(path) else ns.status(path)
        if status is None:
            raise RemoteError(404, "FileNotFoundException", f"File {path} does not exist.")
        if status["type"] == "FILE":
            return [status]
        names = sorted(os.listdir(ns.local(path)), key=lambda n: n.encode())  # HDFS orders children bytewise
        prefix = path.rstrip("/")
        return [s for name in names if (s := ns.status(f"{prefix}/{name}", name)) is not None]

    def content_summary(self, path: str) -> dict[str, Any]:
        if has_dot_segment(path):
            raise RemoteError(404, "FileNotFoundException", f"File does not exist: {path}")
        local = self.stand_in.namespace.local(path)
        if not local.exists():
            raise RemoteError(404, "FileNotFoundException", f"File does not exist: {path}")
        dirs, files, length = (0, 1, local.stat().st_size) if local.is_file() else (0, 0, 0)
        for folder, _subdirs, names in os.walk(local) if local.is_dir() else ():
            dirs += 1
            files += len(names)
            length += sum(os.path.getsize(os.path.join(folder, n)) for n in names)
        return {"directoryCount": dirs, "ecPolicy": "", "fileCount": files, "length": length, "quota": -1,
                "snapshotDirectoryCount": 0, "snapshotFileCount": 0, "snapshotLength": 0, "snapshotSpaceConsumed": 0,
                "spaceConsumed": length * REPLICATION, "spaceQuota": -1, "typeQuota": {}}


class _DatanodeHandler(_Handler):
    # what the datanode's DFSClient relays from the namenode: the RPC's server stack trace in the message
    RELAYED = {"FileAlreadyExistsException", "AlreadyBeingCreatedException", "ParentNotDirectoryException",
               "FileNotFoundException", "StandbyException"}
    RPC = {"CREATE": "create", "APPEND": "append", "OPEN": "getBlockLocations", "GETFILECHECKSUM": "getBlockLocations"}

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        remote = payload.get("RemoteException") if isinstance(payload, dict) else None
        if remote and remote["exception"] in self.RELAYED and "\n" not in remote["message"]:
            rpc = self.RPC.get((self.param("op") or "").upper(), "getFileInfo")
            remote["message"] += _trace(f"NameNodeRpcServer.{rpc}(NameNodeRpcServer.java)")
        self.send_bytes(status, json.dumps(payload).encode(), "application/json; charset=utf-8", headers)  # Netty's

    def serve(self, op: str) -> None:
        ns, path = self.stand_in.namespace, self.hdfs_path
        if op in ("CREATE", "APPEND"):
            standby = (self.param("namenoderpcaddress") or "").rsplit(":", 1)[0]
            if standby in self.stand_in.standby_hosts:  # a CREATE redirected by a standby: its RPC refuses
                raise RemoteError(403, "StandbyException", "Operation category WRITE is not supported in state standby. Visit https://s.apache.org/sbnn-error")
        if op == "CREATE":
            meta = {"owner": self.user, "group": GROUP, "permission": "%o" % self.int_param("permission", 0o644, 8),
                    "replication": self.int_param("replication", REPLICATION), "blockSize": self.int_param("blocksize", BLOCK_SIZE)}
            # the datanode is HDFS's client here: its address is the one FileAlreadyExistsException names
            out, writer = ns.create(path, self.bool_param("overwrite"), meta, self.stand_in.host)
            try:
                with out:
                    self.receive(out, self.stand_in.take_upload_break(), writer)
            finally:
                ns.closed(path, writer)
            nn = self.stand_in
            return self.send_bytes(201, b"", None, {"Location": f"webhdfs://{nn.host}:{nn.port}{quote(path)}"})
        if op == "APPEND":
            local = ns.file(path)
            ns.check_not_writing(path, self.stand_in.host)
            with local.open("ab") as out:
                self.receive(out, None)
            return self.send_bytes(200, b"", None)
        if op == "OPEN":
            return self.open_file(ns.file(path))
        if op == "GETFILECHECKSUM":
            block_size = ns.meta.get(path, {}).get("blockSize", BLOCK_SIZE)
            return self.send_json(200, {"FileChecksum": file_checksum(ns.file(path), block_size)})
        raise RemoteError(400, "IllegalArgumentException", f"Invalid operation {op}")

    def receive(self, out: Any, break_after: int | None, writer: Writer | None = None) -> None:
        """Stream the body into the file. Like HDFS, the file is visible while written (length 0, readers see
        whole packets), and a broken write leaves it there with the bytes received (HDFS closes it so at
        lease recovery): no temp file."""
        received = 0
        for piece in self.body_chunks():
            if break_after is not None and received + len(piece) >= break_after:
                out.write(piece[: break_after - received])
                out.flush()
                self.connection.shutdown(socket.SHUT_RDWR)  # the fault: the datanode drops the connection
                raise _Abort()
            out.write(piece)
            received += len(piece)
            if writer is not None:
                out.flush()
                writer.received = received

    def open_file(self, local: Path) -> None:
        size = self.stand_in.namespace.visible_size(self.hdfs_path, local.stat().st_size)
        offset, length = self.int_param("offset", 0), self.int_param("length", None)
        if offset < 0 or (length is not None and length < 0):
            raise RemoteError(400, "IllegalArgumentException", f"Negative offset or length is not supported. File: {self.hdfs_path}")
        if offset > size:
            raise RemoteError(403, "EOFException", "Cannot seek after EOF")
        count = size - offset if length is None else min(length, size - offset)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(count))
        self.end_headers()
        with local.open("rb") as handle:
            handle.seek(offset)
            while count > 0 and (piece := handle.read(min(count, DATA_CHUNK))):
                self.wfile.write(piece)
                count -= len(piece)


class _StandbyHandler(_Handler):
    def serve(self, op: str) -> None:
        if op == "CREATE":  # the namenode picks a datanode without asking the namespace: the datanode's RPC refuses
            return self.redirect(self.server.host)  # type: ignore[attr-defined]
        category = "READ" if self.command == "GET" else "WRITE"
        raise RemoteError(403, "StandbyException", f"Operation category {category} is not supported in state standby. Visit https://s.apache.org/sbnn-error")

    def op(self) -> str:
        return (self.param("op") or "").upper()  # a standby refuses before it looks at the op


class _Server(StandInServer):
    """A StandInServer that also closes its kept-alive connections on stop, so no old handler serves on."""

    def __init__(self, stand_in: "WebHDFSStandIn", handler: type[StandInHandler], host: str, port: int, verbose: bool):
        self.stand_in, self.connections = stand_in, set()
        super().__init__(handler, host, port, verbose)

    def serve_forever(self, poll_interval: float = 0.05) -> None:
        super().serve_forever(poll_interval)  # stop() waits for a poll: keep restarts and tests quick

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.connections.discard(request)
        super().shutdown_request(request)

    def stop(self) -> None:
        super().stop()
        for conn in list(self.connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class WebHDFSStandIn:
    """The namenode (plus standbys on other loopback addresses, same port) and its datanode."""

    def __init__(self, state_dir: Path, host: str = "127.0.0.1", port: int = 0, verbose: bool = False,
                 standby_hosts: tuple[str, ...] | list[str] = (), datanode_port: int = 0):
        self.state_dir = Path(state_dir)
        self.host, self._port, self.verbose = host, port, verbose
        self.standby_hosts, self.datanode_port = tuple(standby_hosts), datanode_port
        self.namespace = Namespace(self.state_dir)
        self.servers: list[_Server] = []
        self._faults_lock = threading.Lock()
        self._fail: list[Any] = []  # [count, status, op, exception, message]
        self._break_upload: int | None = None

    @property
    def port(self) -> int:
        return self.servers[0].port if self.servers else self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def datanode_url(self) -> str:
        return self.servers[1].url

    def start(self) -> "WebHDFSStandIn":
        try:
            self.servers.append(_Server(self, _NamenodeHandler, self.host, self._port, self.verbose).start())
            self._port = self.port  # a restart comes back on the same port
            self.servers.append(_Server(self, _DatanodeHandler, self.host, self.datanode_port, self.verbose).start())
            for host in self.standby_hosts:
                self.servers.append(_Server(self, _StandbyHandler, host, self.port, self.verbose).start())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        while self.servers:
            self.servers.pop().stop()

    def __enter__(self) -> "WebHDFSStandIn":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- fault switches for tests ----------------------------------------------------------------------
    def fail_next(self, n: int, status: int = 503, op: str | None = None, exception: str | None = None, message: str | None = None) -> None:
        """The next n namenode requests (of `op`, if given) answer `status` with a RemoteException."""
        exception = exception or FAULT_EXCEPTIONS.get(status, "RuntimeException")
        with self._faults_lock:
            self._fail = [n, status, op and op.upper(), exception, message or f"Injected fault: {exception}"]

    def take_fault(self, op: str) -> None:
        with self._faults_lock:
            if not self._fail or self._fail[0] <= 0 or self._fail[2] not in (None, op):
                return
            self._fail[0] -= 1
            _, status, _, exception, message = self._fail
        raise RemoteError(status, exception, message)

    def break_upload_after(self, nbytes: int) -> None:
        """The next datanode CREATE keeps the first nbytes, then drops the connection without an answer."""
        with self._faults_lock:
            self._break_upload = nbytes

    def take_upload_break(self) -> int | None:
        with self._faults_lock:
            nbytes, self._break_upload = self._break_upload, None
        return nbytes

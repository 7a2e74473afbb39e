"""The WebHDFS stand-in, over real HTTP on loopback: through the `hdfs` client, raw requests and Airflow's hook."""

from __future__ import annotations

import hashlib
import json
import os
import tracemalloc
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from hdfs import HdfsError, InsecureClient

from model_governance_devstack.webhdfs import WebHDFSStandIn

USER = "hdfs"


@pytest.fixture
def hdfs(tmp_path):
    with WebHDFSStandIn(tmp_path / "webhdfs") as stand_in:
        yield stand_in


@pytest.fixture
def client(hdfs):
    return InsecureClient(hdfs.url, user=USER)


def api(hdfs, method, path, op, **params):
    """One raw namenode request, redirects not followed."""
    params = {"op": op, "user.name": USER, **params}
    return requests.request(method, f"{hdfs.url}/webhdfs/v1{path}", params=params, allow_redirects=False, timeout=10)


def remote_exception(response):
    return response.json()["RemoteException"]


# -- through the hdfs client ---------------------------------------------------------------------------
def test_upload_download_status_and_partial_reads(client, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)  # more than one streamed piece
    (tmp_path / "model.bin").write_bytes(data)
    assert client.upload("/models/m/model.bin", str(tmp_path / "model.bin")) == "/models/m/model.bin"
    status = client.status("/models/m/model.bin")
    assert status["type"] == "FILE" and status["length"] == len(data) and status["pathSuffix"] == ""
    assert status["owner"] == USER and status["permission"] == "644" and status["blockSize"] == 128 * 1024 * 1024
    assert client.status("/models")["type"] == "DIRECTORY"  # parents made implicitly
    client.download("/models/m/model.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == data
    with client.read("/models/m/model.bin", offset=1000, length=50) as reader:
        assert reader.read() == data[1000:1050]
    with client.read("/models/m/model.bin", offset=len(data) - 5) as reader:
        assert reader.read() == data[-5:]
    assert client.status("/nowhere", strict=False) is None


def test_overwrite_upload_and_refusal(client, tmp_path):
    (tmp_path / "a.txt").write_text("first")
    client.upload("/d/a.txt", str(tmp_path / "a.txt"))
    (tmp_path / "a.txt").write_text("second version")
    with pytest.raises(HdfsError, match="already exists"):
        client.upload("/d/a.txt", str(tmp_path / "a.txt"))
    client.upload("/d/a.txt", str(tmp_path / "a.txt"), overwrite=True)  # .temp-<micros>, delete, rename
    with client.read("/d/a.txt") as reader:
        assert reader.read() == b"second version"
    assert client.list("/d") == ["a.txt"]
    with pytest.raises(HdfsError, match="/d/a.txt for client 127.0.0.1 already exists"):
        client.write("/d/a.txt", data=b"x")
    client.write("/d/a.txt", data=b"x", overwrite=True, permission="600")
    assert client.status("/d/a.txt")["permission"] == "600"


def test_parallel_folder_upload(client, tmp_path):
    folder = tmp_path / "bundle"
    files = {f"part-{i}.bin": os.urandom(100_000 + i) for i in range(8)} | {"sub/deep/x.txt": b"deep"}
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    client.upload("/bundle", str(folder), n_threads=4)
    found = {}
    for dirpath, _dirs, names in client.walk("/bundle"):
        for name in names:
            path = f"{dirpath}/{name}"
            with client.read(path) as reader:
                found[path.removeprefix("/bundle/")] = reader.read()
    assert found == files
    assert client.content("/bundle") == {
        "directoryCount": 3, "ecPolicy": "", "fileCount": 9, "length": sum(map(len, files.values())), "quota": -1,
        "snapshotDirectoryCount": 0, "snapshotFileCount": 0, "snapshotLength": 0, "snapshotSpaceConsumed": 0,
        "spaceConsumed": sum(map(len, files.values())), "spaceQuota": -1, "typeQuota": {},
    }


def test_makedirs_list_append_delete(client):
    client.makedirs("/a/b/c", permission="750")
    assert client.status("/a/b/c")["permission"] == "750" and client.status("/a")["permission"] == "755"
    client.makedirs("/a/b/c")  # already there: fine
    client.write("/a/f", data=b"one")
    client.write("/a/f", data=b"+two", append=True)
    with client.read("/a/f") as reader:
        assert reader.read() == b"one+two"
    assert client.list("/a", status=True)[0][1]["childrenNum"] == 1
    assert client.list("/a") == ["b", "f"]
    with pytest.raises(HdfsError, match="is not a directory"):
        client.list("/a/f")
    with pytest.raises(HdfsError, match=r"^`/a is non empty': Directory is not empty$"):
        client.delete("/a")
    assert client.delete("/a/b/c") is True  # an empty folder needs no recursive
    assert client.delete("/a", recursive=True) is True
    assert client.delete("/a", recursive=True) is False
    client.write("/f", data=b"")
    with pytest.raises(HdfsError, match="Path is not a directory: /f"):
        client.makedirs("/f")


def test_rename_keeps_hadoops_old_semantics(client):
    client.write("/src/x", data=b"x")
    client.write("/other", data=b"o")
    client.makedirs("/dst")
    client.rename("/src", "/dst")  # onto an existing folder: moved inside it
    assert client.list("/dst") == ["src"] and client.status("/src", strict=False) is None
    client.rename("/dst/src", "/moved")
    assert client.list("/moved") == ["x"]
    with pytest.raises(HdfsError, match="Unable to rename"):
        client.rename("/other", "/moved/x")  # the target file exists
    with pytest.raises(HdfsError, match="Unable to rename"):
        client.rename("/other", "/missing-parent/y")
    with pytest.raises(HdfsError, match="Unable to rename"):
        client.rename("/nothing", "/y")
    with pytest.raises(HdfsError, match="Unable to rename"):
        client.rename("/moved", "/moved/inside")  # under itself
    client.rename("/other", "/other")  # onto itself: true


def test_checksum_is_hdfs_shaped_and_follows_content(client):
    client.write("/c/one", data=b"same content")
    client.write("/c/two", data=b"same content")
    client.write("/c/three", data=b"other content")
    one = client.checksum("/c/one")
    # 28 bytes, serialised from Hadoop's 32-byte DataOutputBuffer (4 zero bytes after them)
    assert one["algorithm"] == "MD5-of-0MD5-of-512CRC32C" and one["length"] == 28 and len(one["bytes"]) == 64
    assert one == client.checksum("/c/two") != client.checksum("/c/three")
    client.write("/c/empty", data=b"")
    assert client.checksum("/c/empty") == {  # what a Hadoop 3.5 NameNode answered for an empty file
        "algorithm": "MD5-of-0MD5-of-0CRC32", "bytes": "00000000" + "0" * 16 + "70bc8f4b72a86921468bf8e8441dce51" + "0" * 8, "length": 28,
    }
    with pytest.raises(HdfsError, match="File /c/none not found."):
        client.checksum("/c/none")


def test_state_survives_a_restart(tmp_path):
    with WebHDFSStandIn(tmp_path / "s") as first, requests.Session() as session:
        InsecureClient(first.url, user="alice").write("/keep/me", data=b"kept", permission="640")
        listing = f"{first.url}/webhdfs/v1/?op=LISTSTATUS"
        assert session.get(listing, timeout=10).status_code == 200
        first.stop()
        with pytest.raises(requests.ConnectionError):  # a kept-alive connection is not served after stop
            session.get(listing, timeout=10)
        assert first.start().url in listing  # and a restart comes back on the same port
        first.stop()
    with WebHDFSStandIn(tmp_path / "s") as second:
        client = InsecureClient(second.url, user="bob")
        with client.read("/keep/me") as reader:
            assert reader.read() == b"kept"
        assert {k: client.status("/keep/me")[k] for k in ("owner", "permission")} == {"owner": "alice", "permission": "640"}
    assert (tmp_path / "s" / "fs" / "keep" / "me").read_bytes() == b"kept"


# -- raw HTTP: statuses, bodies, redirects -------------------------------------------------------------
def test_create_redirects_to_the_datanode_then_answers_201(hdfs):
    created = api(hdfs, "PUT", "/r/file", "CREATE", overwrite="false", permission="600")
    assert created.status_code == 307 and created.content == b""
    location = urlsplit(created.headers["Location"])
    assert location.port not in (None, hdfs.port) and location.hostname == "127.0.0.1"
    params = parse_qs(location.query)
    assert params["user.name"] == [USER] and params["op"] == ["CREATE"] and params["permission"] == ["600"]
    assert params["overwrite"] == ["false"]
    written = requests.put(created.headers["Location"], data=b"payload", timeout=10)
    assert written.status_code == 201 and written.headers["Location"] == f"webhdfs://127.0.0.1:{hdfs.port}/r/file"
    again = requests.put(api(hdfs, "PUT", "/r/file", "CREATE").headers["Location"], data=b"other", timeout=10)
    assert again.status_code == 403
    assert remote_exception(again) == {
        "exception": "FileAlreadyExistsException", "javaClassName": "org.apache.hadoop.fs.FileAlreadyExistsException",
        "message": remote_exception(again)["message"],
    }
    # the DataNode relays the NameNode's error, its stack trace in the message, as Netty's JSON
    assert remote_exception(again)["message"].startswith("/r/file for client 127.0.0.1 already exists\n\tat org.apache.hadoop.")
    assert again.headers["Content-Type"] == "application/json; charset=utf-8"
    under_file = requests.put(api(hdfs, "PUT", "/r/file/child", "CREATE").headers["Location"], data=b"", timeout=10)
    assert (under_file.status_code, remote_exception(under_file)["exception"]) == (403, "ParentNotDirectoryException")
    assert api(hdfs, "GET", "/r/file", "GETFILESTATUS").json()["FileStatus"]["permission"] == "600"
    assert api(hdfs, "PUT", "/r/x", "CREATE", noredirect="true").json()["Location"].startswith("http://127.0.0.1:")


def test_chunked_and_content_length_uploads_stream(hdfs):
    size = 24 * 1024 * 1024

    def pieces():
        for i in range(size // 65536):
            yield bytes([i % 256]) * 65536

    tracemalloc.start()
    try:
        location = api(hdfs, "PUT", "/big/chunked", "CREATE").headers["Location"]
        assert requests.put(location, data=pieces(), timeout=60).status_code == 201  # Transfer-Encoding: chunked
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024  # neither side held the file
    digest = hashlib.sha256(b"".join(pieces())).hexdigest()
    opened = requests.get(f"{hdfs.url}/webhdfs/v1/big/chunked", params={"op": "OPEN"}, timeout=60)  # no user.name
    assert opened.status_code == 200 and hashlib.sha256(opened.content).hexdigest() == digest
    assert opened.headers["Content-Type"] == "application/octet-stream"
    location = api(hdfs, "PUT", "/big/sized", "CREATE").headers["Location"]
    with requests.Session() as session:  # keep-alive: the next request on the connection still works
        assert session.put(location, data=b"z" * 3_000_000, timeout=60).status_code == 201
        assert session.put(location, data=b"y" * 10, timeout=60).status_code == 403
        assert session.put(location + "&overwrite=true", data=iter([b"a", b"b"]), timeout=60).status_code == 201
    assert api(hdfs, "GET", "/big/sized", "GETFILESTATUS").json()["FileStatus"]["length"] == 2


def test_open_and_checksum_redirects_carry_the_user(hdfs, client):
    client.write("/o/f", data=b"0123456789")
    opened = api(hdfs, "GET", "/o/f", "OPEN", offset="2", length="3")
    assert opened.status_code == 307
    assert parse_qs(urlsplit(opened.headers["Location"]).query)["user.name"] == [USER]
    followed = requests.get(opened.headers["Location"], timeout=10)
    assert followed.content == b"234"
    checksum = requests.get(f"{hdfs.url}/webhdfs/v1/o/f", params={"op": "GETFILECHECKSUM", "user.name": USER}, timeout=10)
    assert checksum.json()["FileChecksum"]["algorithm"] == "MD5-of-0MD5-of-512CRC32C"
    folder = api(hdfs, "GET", "/o", "OPEN")  # the namenode finds it and redirects; the datanode refuses
    assert folder.status_code == 307
    refused = requests.get(folder.headers["Location"], timeout=10)
    assert (refused.status_code, remote_exception(refused)["message"].split("\n")[0]) == (404, "Path is not a file: /o")


def test_error_bodies_match_hadoop(hdfs):
    missing = api(hdfs, "GET", "/nope", "GETFILESTATUS")
    assert missing.status_code == 404 and missing.headers["Content-Type"] == "application/json"
    assert remote_exception(missing) == {
        "exception": "FileNotFoundException", "javaClassName": "java.io.FileNotFoundException", "message": "File does not exist: /nope",
    }
    assert remote_exception(api(hdfs, "GET", "/nope", "LISTSTATUS"))["message"] == "File /nope does not exist."
    unknown = api(hdfs, "GET", "/", "FROB")
    assert unknown.status_code == 400 and remote_exception(unknown) == {
        "exception": "IllegalArgumentException", "javaClassName": "java.lang.IllegalArgumentException",
        "message": 'Invalid value for webhdfs parameter "op": java.lang.IllegalArgumentException: FROB is not a valid GET operation.',
    }
    wrong_method = api(hdfs, "PUT", "/", "GETFILESTATUS")
    assert remote_exception(wrong_method)["message"].endswith("GETFILESTATUS is not a valid PUT operation.")
    assert api(hdfs, "GET", "/", "GETACLSTATUS").status_code == 400  # a real op the stand-in does not serve
    api(hdfs, "PUT", "/full/child", "MKDIRS")
    not_empty = api(hdfs, "DELETE", "/full", "DELETE", recursive="false")
    assert not_empty.status_code == 403 and remote_exception(not_empty)["exception"] == "PathIsNotEmptyDirectoryException"
    assert api(hdfs, "DELETE", "/nope", "DELETE").json() == {"boolean": False}
    assert api(hdfs, "PUT", "/a:b", "MKDIRS").status_code == 400  # HDFS names cannot hold ':'
    assert api(hdfs, "PUT", "/x", "RENAME", destination="relative").status_code == 400
    assert api(hdfs, "GET", "/", "GETHOMEDIRECTORY").json() == {"Path": f"/user/{USER}"}


def test_paths_are_url_quoted_and_absolute(hdfs, client):
    name = "/odd dir/a+b%c ü?.txt"
    client.write(name, data=b"odd")
    assert client.list("/odd dir") == ["a+b%c ü?.txt"]
    assert api(hdfs, "GET", "/odd%20dir/a%2Bb%25c%20%C3%BC%3F.txt", "GETFILESTATUS").json()["FileStatus"]["length"] == 3
    assert api(hdfs, "GET", "//odd%20dir//", "GETFILESTATUS").json()["FileStatus"]["type"] == "DIRECTORY"
    dots = requests.get(f"{hdfs.url}/webhdfs/v1/a/%2E%2E/etc?op=GETFILESTATUS", timeout=10)
    # a real NameNode reads '..' as a name: not found (writes refuse it: test_security, the parity suite)
    assert dots.status_code == 404 and remote_exception(dots)["message"] == "File does not exist: /a/../etc"
    assert requests.get(f"{hdfs.url}/webhdfsv1?op=GETFILESTATUS", timeout=10).status_code == 404


# -- fault switches -------------------------------------------------------------------------------------
def test_fail_next_answers_the_given_status(hdfs, client):
    hdfs.fail_next(2, op="GETFILESTATUS")
    assert api(hdfs, "GET", "/", "LISTSTATUS").status_code == 200  # another op is not touched
    first = api(hdfs, "GET", "/", "GETFILESTATUS")
    assert first.status_code == 503 and remote_exception(first)["exception"] == "RetriableException"
    with pytest.raises(HdfsError):
        client.status("/")
    assert client.status("/")["type"] == "DIRECTORY"
    hdfs.fail_next(1, status=500)
    assert remote_exception(api(hdfs, "PUT", "/m", "MKDIRS"))["exception"] == "RuntimeException"
    assert api(hdfs, "PUT", "/m", "MKDIRS").json() == {"boolean": True}


def test_a_broken_upload_leaves_the_bytes_received(hdfs, client, tmp_path):
    hdfs.break_upload_after(100_000)
    location = api(hdfs, "PUT", "/broken/f", "CREATE").headers["Location"]
    with pytest.raises(requests.ConnectionError):
        requests.put(location, data=iter([b"x" * 65536] * 16), timeout=10)
    assert client.status("/broken/f")["length"] == 100_000  # like HDFS after lease recovery
    (tmp_path / "f").write_bytes(b"y" * 300_000)
    hdfs.break_upload_after(1000)
    with pytest.raises(requests.ConnectionError):
        client.upload("/broken/g", str(tmp_path / "f"))
    assert client.status("/broken/g", strict=False) is None  # the client cleaned up
    client.upload("/broken/g", str(tmp_path / "f"))  # one-shot
    assert client.status("/broken/g")["length"] == 300_000


# -- HA: a standby namenode first, through Airflow's hook -----------------------------------------------
def test_webhdfs_hook_fails_over_from_a_standby(tmp_path, monkeypatch):
    from airflow.providers.apache.hdfs.hooks.webhdfs import AirflowWebHDFSHookException, WebHDFSHook

    with WebHDFSStandIn(tmp_path / "ha", standby_hosts=("127.0.0.2",)) as hdfs:
        standby = requests.get(f"http://127.0.0.2:{hdfs.port}/webhdfs/v1/?op=GETFILESTATUS&user.name=hdfs", timeout=10)
        assert standby.status_code == 403 and remote_exception(standby) == {
            "exception": "StandbyException", "javaClassName": "org.apache.hadoop.ipc.StandbyException",
            "message": "Operation category READ is not supported in state standby. Visit https://s.apache.org/sbnn-error",
        }
        conn = {"conn_type": "webhdfs", "host": "127.0.0.2,127.0.0.1", "port": hdfs.port, "login": "hdfs"}
        monkeypatch.setenv("AIRFLOW_CONN_WEBHDFS_TEST", json.dumps(conn))
        hook = WebHDFSHook(webhdfs_conn_id="webhdfs_test")
        assert hook.get_conn().url == f"http://127.0.0.1:{hdfs.port}"
        (tmp_path / "local.txt").write_text("through airflow")
        hook.load_file(str(tmp_path / "local.txt"), "/airflow/local.txt")
        assert hook.check_for_path("/airflow/local.txt") and not hook.check_for_path("/airflow/none")
        assert hook.read_file("/airflow/local.txt") == b"through airflow"

        # the hdfs client's own failover across ;-separated namenodes
        client = InsecureClient(f"http://127.0.0.2:{hdfs.port};{hdfs.url}", user="hdfs")
        assert client.list("/airflow") == ["local.txt"]

        hdfs.fail_next(1, status=403, exception="StandbyException")  # the active one is switching over too
        with pytest.raises(AirflowWebHDFSHookException, match="Failed to locate the valid server"):
            hook.get_conn()
        assert hook.get_conn()

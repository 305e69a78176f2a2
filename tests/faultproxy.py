"""A small fault-injecting reverse proxy for AWS APIs, for the harness's own tests.

It sits between boto3 (``AWS_ENDPOINT_URL`` points at it) and moto's server and
forwards every request, except that an armed rule makes it answer the Nth and
later calls of one operation with an AWS-shaped error, in the wire format of
that service's protocol (EC2 XML, query XML for IAM/STS/ELB, rest-json with
``x-amzn-ErrorType`` for EKS, rest-xml for S3), or hold the call until
released (to kill a client mid-call). Real HTTP on both sides: nothing in the
code under test is patched.

Operations are named ``service:Operation`` as botocore names them
(``ec2:CreateVpc``, ``eks:CreateCluster``, ``s3:PutBucketTagging``), and the
proxy records every operation it sees, in order (``seen``).
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
        "transfer-encoding", "upgrade", "content-length"}

# EKS (rest-json): (method, path regex) -> operation
_EKS = [
    ("POST", r"^/clusters$", "CreateCluster"),
    ("GET", r"^/clusters$", "ListClusters"),
    ("GET", r"^/clusters/[^/]+$", "DescribeCluster"),
    ("DELETE", r"^/clusters/[^/]+$", "DeleteCluster"),
    ("POST", r"^/clusters/[^/]+/node-groups$", "CreateNodegroup"),
    ("GET", r"^/clusters/[^/]+/node-groups$", "ListNodegroups"),
    ("GET", r"^/clusters/[^/]+/node-groups/[^/]+$", "DescribeNodegroup"),
    ("DELETE", r"^/clusters/[^/]+/node-groups/[^/]+$", "DeleteNodegroup"),
    ("GET", r"^/tags/.+$", "ListTagsForResource"),
    ("POST", r"^/tags/.+$", "TagResource"),
]
# S3 (rest-xml, path style): (method, has key, sub-resource) -> operation
_S3_BUCKET = {
    ("PUT", ""): "CreateBucket", ("DELETE", ""): "DeleteBucket", ("HEAD", ""): "HeadBucket",
    ("GET", ""): "ListObjects", ("PUT", "tagging"): "PutBucketTagging", ("GET", "tagging"): "GetBucketTagging",
    ("PUT", "publicAccessBlock"): "PutPublicAccessBlock", ("GET", "publicAccessBlock"): "GetPublicAccessBlock",
    ("GET", "versions"): "ListObjectVersions", ("POST", "delete"): "DeleteObjects",
    ("GET", "uploads"): "ListMultipartUploads", ("PUT", "versioning"): "PutBucketVersioning",
    ("GET", "versioning"): "GetBucketVersioning", ("GET", "location"): "GetBucketLocation",
}
_S3_OBJECT = {
    ("PUT", ""): "PutObject", ("GET", ""): "GetObject", ("HEAD", ""): "HeadObject", ("DELETE", ""): "DeleteObject",
    ("POST", "uploads"): "CreateMultipartUpload", ("PUT", "uploadId"): "UploadPart",
    ("DELETE", "uploadId"): "AbortMultipartUpload", ("POST", "uploadId"): "CompleteMultipartUpload",
}


def operation_of(method: str, path: str, headers, body: bytes) -> str:
    """``service:Operation`` of one AWS request (best effort; ``service:METHOD /path`` if unknown)."""
    parts = urlsplit(path)
    query = parse_qs(parts.query, keep_blank_values=True)
    cred = query.get("X-Amz-Credential", [""])[0]  # a presigned URL
    m = _SCOPE.search(headers.get("Authorization", "")) or (_SCOPE.search("Credential=" + cred) if cred else None)
    service = m.group(1) if m else "unknown"
    target = headers.get("X-Amz-Target")
    if target:
        return f"{service}:{target.rsplit('.', 1)[-1]}"
    if service in ("ec2", "iam", "sts", "elasticloadbalancing", "unknown"):
        form = dict(query)
        ctype = headers.get("Content-Type", "")
        if body and "x-www-form-urlencoded" in ctype:
            form.update(parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True))
        action = form.get("Action", [None])[0]
        if service == "elasticloadbalancing":
            service = "elbv2" if form.get("Version", [""])[0] == "2015-12-01" else "elb"
        if action:
            return f"{service}:{action}"
    if service == "eks":
        for meth, rx, op in _EKS:
            if method == meth and re.match(rx, parts.path):
                return f"eks:{op}"
    if service == "s3":
        segs = [s for s in parts.path.split("/") if s]
        if not segs:
            return "s3:ListBuckets"
        sub = next((k for k in ("tagging", "publicAccessBlock", "versions", "delete", "uploads", "uploadId",
                                "versioning", "location") if k in query), "")
        table = _S3_OBJECT if len(segs) > 1 else _S3_BUCKET
        op = table.get((method, sub))
        if op:
            return f"s3:{op}"
    return f"{service}:{method} {parts.path}"


def error_response(operation: str, status: int, code: str, message: str) -> tuple[int, dict, bytes]:
    """An error as the service would send it, in its protocol's format."""
    service = operation.split(":", 1)[0]
    rid = str(uuid.uuid4())
    if service == "ec2":
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
                f"<Message>{message}</Message></Error></Errors><RequestID>{rid}</RequestID></Response>")
        return status, {"Content-Type": "text/xml;charset=UTF-8"}, body.encode()
    if service in ("iam", "sts", "elb", "elbv2", "unknown"):
        body = (f"<ErrorResponse><Error><Type>{'Sender' if status < 500 else 'Receiver'}</Type><Code>{code}</Code>"
                f"<Message>{message}</Message></Error><RequestId>{rid}</RequestId></ErrorResponse>")
        return status, {"Content-Type": "text/xml", "x-amzn-RequestId": rid}, body.encode()
    if service == "eks":
        return status, {"Content-Type": "application/json", "x-amzn-ErrorType": code,
                        "x-amzn-RequestId": rid}, json.dumps({"message": message}).encode()
    if service == "s3":
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
                f"<RequestId>{rid}</RequestId></Error>")
        return status, {"Content-Type": "application/xml", "x-amz-request-id": rid}, body.encode()
    return status, {"Content-Type": "application/json"}, json.dumps({"__type": code, "message": message}).encode()


@dataclass
class Rule:
    operation: str
    nth: int = 1  # fail the nth call after arming, and every later one (retries included)
    status: int = 400
    code: str = "InjectedFault"
    message: str = "fault injected by the stackproof test proxy"
    hold: bool = False  # instead of failing: block until released
    times: int | None = None  # fire at most this many times (None: until disarmed)
    reply: tuple[int, dict, bytes] | None = None  # instead of an error: this (status, headers, body)
    seen: int = 0
    fired: int = 0
    hit: threading.Event = field(default_factory=threading.Event)


class FaultProxy:
    def __init__(self, upstream: str):
        u = urlsplit(upstream)
        self.upstream_host, self.upstream_port = u.hostname, u.port or 80
        self.rules: list[Rule] = []
        self.seen: list[str] = []
        self.counts: Counter = Counter()
        self._lock = threading.Lock()
        self._release = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                # one small response in two writes would wait on Nagle + delayed ACK (40 ms)
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args):  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _send(self, status: int, headers: dict, body: bytes) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() not in _HOP:
                        self.send_header(k, v)
                length = None
                if self.command == "HEAD":
                    length = next((v for k, v in headers.items() if k.lower() == "content-length"), None)
                self.send_header("Content-Length", str(length if length is not None else len(body)))
                self.end_headers()
                if self.command != "HEAD" and body:
                    self.wfile.write(body)

            def _handle(self) -> None:
                body = self._body()
                op = operation_of(self.command, self.path, self.headers, body)
                rule = proxy._match(op)
                if rule is not None and rule.hold:
                    rule.hit.set()
                    proxy._release.wait(60)
                    self.close_connection = True
                    status, headers, payload = error_response(op, 503, "ServiceUnavailable", "held and released")
                    try:
                        self._send(status, headers, payload)
                    except OSError:
                        pass
                    return
                if rule is not None:
                    status, headers, payload = rule.reply or error_response(op, rule.status, rule.code, rule.message)
                    self._send(status, headers, payload)
                    return
                conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=60)
                try:
                    conn.connect()
                    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                    for k, v in self.headers.items():
                        if k.lower() not in _HOP and k.lower() != "expect":
                            conn.putheader(k, v)
                    conn.putheader("Content-Length", str(len(body)))
                    conn.endheaders(body)
                    resp = conn.getresponse()
                    payload = resp.read()
                    headers = {k: v for k, v in resp.getheaders()}
                    self._send(resp.status, headers, payload)
                finally:
                    conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="faultproxy", daemon=True)

    def start(self) -> "FaultProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    def _match(self, op: str) -> Rule | None:
        with self._lock:
            self.seen.append(op)
            self.counts[op] += 1
            for rule in self.rules:
                if rule.operation == op:
                    rule.seen += 1
                    if rule.seen >= rule.nth and (rule.times is None or rule.fired < rule.times):
                        rule.fired += 1
                        return rule
            return None

    # -- test API ---------------------------------------------------------------
    def arm(self, operation: str, nth: int = 1, **kwargs) -> Rule:
        rule = Rule(operation, nth, **kwargs)
        with self._lock:
            self.rules.append(rule)
        return rule

    def hold(self, operation: str, nth: int = 1) -> Rule:
        self._release.clear()
        return self.arm(operation, nth, hold=True)

    def release(self) -> None:
        self._release.set()

    def disarm(self) -> None:
        with self._lock:
            self.rules.clear()
        self._release.set()

    def record(self) -> list[str]:
        """Start a fresh record of operations seen; returns the (live) list."""
        with self._lock:
            self.seen = []
        return self.seen

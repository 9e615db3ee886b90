"""nginx in front of gunicorn: finding the binary and writing its configuration.

``serve`` listens through nginx, never through gunicorn directly. A gthread
worker gives each connection a thread for as long as the client takes to send
its request, so a handful of clients sending one byte per second held every
thread and ``/ping`` went unanswered (issue 17). nginx reads each request in
full, with timeouts, before it hands it to gunicorn on a Unix socket, and
buffers each response before sending it back, so a gunicorn thread is only busy
while a request is being answered. SageMaker's own bring-your-own-container
example puts nginx in front of gunicorn for the same reason.

Nothing here starts a process; ``inference.server`` does.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from inference.settings import ServingSettings

#: Where distributions install nginx when ``/usr/sbin`` is not on ``PATH``.
NGINX_LOCATIONS = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/opt/homebrew/bin/nginx")
INSTALL_HINT = (
    "serve needs nginx in front of gunicorn (it reads each request in full, with timeouts, "
    "so slow clients cannot hold the workers) and found none on PATH or in "
    f"{', '.join(NGINX_LOCATIONS)}; install it: `apt-get install nginx` (Debian, Ubuntu; "
    "the image has it), `brew install nginx` (macOS)"
)
#: Seconds a client may take to send its request headers, and between two reads of its body.
CLIENT_HEADER_TIMEOUT = 10
CLIENT_BODY_TIMEOUT = 10
#: Seconds a client may take between two reads of the response.
SEND_TIMEOUT = 30
#: Longer than SageMaker's front end keeps idle connections open (60 s).
KEEPALIVE_TIMEOUT = 75
#: On SIGTERM nginx finishes in-flight requests for at most this long, then gunicorn
#: drains (``inference.server.GRACEFUL_TIMEOUT``): together inside SageMaker's 30 s.
SHUTDOWN_TIMEOUT = 18
#: Bodies up to this size stay in memory; larger ones are buffered in a temporary file.
BODY_BUFFER = "128k"


class ProxyUnavailableError(RuntimeError):
    """nginx is not installed; the message says how to install it."""


def find_nginx(configured: str = "") -> str:
    """The nginx binary: ``configured`` if given, else ``nginx`` on ``PATH`` or a usual location.

    Raises:
        ProxyUnavailableError: ``configured`` is not an executable, or no nginx is installed.
    """
    if configured:
        if shutil.which(configured):
            return configured
        raise ProxyUnavailableError(
            f"NCF_NGINX={configured!r} is not an executable; {INSTALL_HINT}"
        )
    for candidate in ("nginx", *NGINX_LOCATIONS):
        found = shutil.which(candidate)
        if found:
            return found
    raise ProxyUnavailableError(INSTALL_HINT)


def _error_bodies(settings: ServingSettings) -> dict[int, tuple[int, str]]:
    """The errors nginx answers itself, as ``{status seen by nginx: (status sent, message)}``.

    Errors that gunicorn answers pass through unchanged (``proxy_intercept_errors``
    is off), so only requests that never reach the app get these.
    """
    return {
        400: (400, "the request is not valid HTTP"),
        408: (408, "the request was not sent in time"),
        413: (413, settings.too_large_message),
        414: (414, "the request line is too long"),
        494: (400, "the request headers are too large"),
        500: (500, "internal error in the proxy"),
        502: (502, "the model server is not running (starting up or stopping)"),
        504: (504, f"the model server did not answer within {settings.timeout} s"),
    }


def nginx_config(settings: ServingSettings, runtime_dir: Path, upstream_socket: Path) -> str:
    """The nginx configuration for one run of ``serve``.

    Args:
        settings: Port, payload limit and timeout.
        runtime_dir: A private directory for nginx's pid file and temporary files.
        upstream_socket: gunicorn's Unix socket.
    """
    error_pages = []
    error_locations = []
    for status, (sent, message) in _error_bodies(settings).items():
        body = json.dumps({"error": message}, separators=(",", ":"))
        if "'" in body or "$" in body:  # nginx would read these as quoting or a variable
            raise ValueError(f"error message {message!r} cannot go into nginx's configuration")
        # A URI, not a named location: a request line too bad to parse has no URI to keep.
        error_pages.append(f"        error_page {status} /_error/{status};")
        error_locations.append(
            f"        location = /_error/{status} {{\n"
            f"            internal;\n"
            f"            default_type application/json;\n"
            f"            return {sent} '{body}';\n"
            f"        }}"
        )
    temporary = "\n".join(
        f"    {kind}_temp_path {runtime_dir / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""# Written by inference.proxy for one run of `serve`; see that module.
daemon off;
worker_processes auto;
pid {runtime_dir / "nginx.pid"};
error_log stderr error;
worker_shutdown_timeout {SHUTDOWN_TIMEOUT}s;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    server_tokens off;
    default_type application/json;
{temporary}

    # A client must send its headers within {CLIENT_HEADER_TIMEOUT} s and keep its body coming;
    # nginx holds the request until it is complete, so gunicorn never waits on a client.
    client_header_timeout {CLIENT_HEADER_TIMEOUT}s;
    client_body_timeout {CLIENT_BODY_TIMEOUT}s;
    send_timeout {SEND_TIMEOUT}s;
    keepalive_timeout {KEEPALIVE_TIMEOUT}s;
    reset_timedout_connection on;
    # The same limit as the app's (SAGEMAKER_MAX_PAYLOAD_IN_MB), for Content-Length and
    # chunked bodies alike: a body of exactly the limit is accepted.
    client_max_body_size {settings.max_payload_bytes};
    client_body_buffer_size {BODY_BUFFER};

    upstream gunicorn {{
        server unix:{upstream_socket};
        keepalive 32;
    }}

    server {{
        listen 0.0.0.0:{settings.port};

        location / {{
            proxy_pass http://gunicorn;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_request_buffering on;
            proxy_buffering on;
            proxy_buffers 64 16k;
            proxy_read_timeout {settings.timeout}s;
            proxy_next_upstream off;
        }}

{chr(10).join(error_pages)}
{chr(10).join(error_locations)}
    }}
}}
"""

#!/usr/bin/env python3
"""A byte-counting TCP proxy for the remote benchmark.

    count-proxy.py LISTEN_PORT TARGET COUNTS_FILE

TARGET is HOST:PORT or a unix socket path. Every connection is relayed both ways; when it
closes, one line "UP DOWN" (bytes client->server, server->client) is appended to COUNTS_FILE.
So the client's bytes on the wire are measured the same way for kiln and for buildctl.
Listens on 127.0.0.1 only; stops when killed.
"""
import socket
import sys
import threading

listen_port, target, counts = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lock = threading.Lock()


def connect():
    if target.startswith("/"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(target)
        return s
    host, port = target.rsplit(":", 1)
    return socket.create_connection((host, int(port)))


def pump(src, dst, total, idx):
    try:
        while True:
            data = src.recv(1 << 16)
            if not data:
                break
            dst.sendall(data)
            total[idx] += len(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def serve(client):
    upstream = connect()
    total = [0, 0]
    a = threading.Thread(target=pump, args=(client, upstream, total, 0))
    b = threading.Thread(target=pump, args=(upstream, client, total, 1))
    a.start(); b.start(); a.join(); b.join()
    client.close(); upstream.close()
    with lock, open(counts, "a") as f:
        f.write(f"{total[0]} {total[1]}\n")


listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", listen_port))
listener.listen(64)
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()

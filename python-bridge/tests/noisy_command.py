"""A command that writes to stdout in every way a library might (used by test_protocol)."""

import ctypes
import os
import sys


def run(request, emitter):
    print("print() noise")
    sys.stdout.write("sys.stdout noise\n")
    sys.__stdout__.write("sys.__stdout__ noise\n")
    sys.__stdout__.flush()
    os.write(1, b"fd 1 noise\n")
    libc = ctypes.CDLL(None)
    libc.puts(b"libc puts noise")
    libc.fflush(None)
    emitter.progress("noise", 0.5, "multi\nline message")
    if request.get("fail"):
        raise ValueError("boom\nsecond line")
    return {"ok": True}

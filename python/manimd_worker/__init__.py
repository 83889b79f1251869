"""The manimd worker: runs one job inside the sandbox.

It reads one job as JSON on stdin and reports, as JSON lines on stdout, what
it is doing and how it ended. Everything it touches lives under /job; the
supervisor outside trusts none of it beyond this job's own result.
"""

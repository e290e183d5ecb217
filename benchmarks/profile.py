"""Profile our receiver under a benchmark load: ``python3 -m benchmarks.profile``.

Starts our receiver, attaches py-spy (``pip install py-spy``) to it, sends a
scenario's data a few times with DCMTK's storescu, stops the receiver, and prints
the functions with the most samples: *self* (the frame on top of the stack, where
the CPU was) and *inclusive* (anywhere on the stack).  The raw folded stacks are
kept for flame graph tools (e.g. speedscope, inferno, flamegraph.pl).

CPU time, not wall time (issue 21): py-spy runs without ``--idle``, so a thread
waiting (in ``recv``, ``select``, a lock) is not sampled, and the shares are of
the receiver's CPU.  A wall-time profile of a receiver that waits for
``storescu`` between instances mostly measures the sender.  ``--idle`` switches
waiting threads back in (e.g. to see where an association stalls).  The receiver's
own CPU seconds over the run (from /proc) are printed beside samples / rate, so
the two can be compared.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.cputime import tree_cpu_seconds
from benchmarks.procs import BenchmarkError, Command, Receiver, find_dcmtk_tool, free_port
from benchmarks.run import (
    OURS_DEFAULT,
    REPO,
    Dataset,
    Tools,
    prepare,
    receiver_command,
    sender_command,
)
from benchmarks.scenarios import FULL, scenarios, select
from benchmarks.stats import OURS, OURS_DURABLE, markdown_table

#: ``func (path/file.py:123)``: py-spy's frame format in raw (folded) output.
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
#: Up to and including ``.../lib/python3.11/`` and ``site-packages/``.
_LIBRARY_PREFIX = re.compile(r"^.*/lib/python3\.\d+/(site-packages/)?")


@dataclass(frozen=True)
class Profile:
    total: int
    self_samples: Counter[str]
    inclusive_samples: Counter[str]


def function_key(frame: str) -> str:
    """``func (file.py)`` without the line number and with a shortened path."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match.group("file")
    path = _LIBRARY_PREFIX.sub("", path).replace(str(REPO) + "/", "")
    return f"{match.group('function')} ({path})"


def summarize_folded(lines: Iterable[str]) -> Profile:
    """Self and inclusive samples per function from folded stacks (``a;b;c 12``)."""
    self_samples: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in lines:
        line = line.rstrip("\n")
        if not line:
            continue
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [function_key(frame) for frame in stack.split(";") if frame]
        if not frames:
            continue
        total += count
        self_samples[frames[-1]] += count
        for function in set(frames):
            inclusive[function] += count
    return Profile(total, self_samples, inclusive)


def top_table(profile: Profile, top: int) -> str:
    def share(count: int) -> str:
        return f"{100.0 * count / profile.total:.1f} %" if profile.total else "n/a"

    self_rows = [[name, share(n)] for name, n in profile.self_samples.most_common(top)]
    inclusive_rows = [[name, share(n)] for name, n in profile.inclusive_samples.most_common(top)]
    return "\n\n".join(
        [
            f"samples: {profile.total}",
            markdown_table(["function (self)", "share"], self_rows),
            markdown_table(["function (inclusive)", "share"], inclusive_rows),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks.profile", description=__doc__)
    parser.add_argument("--scenario", default="ct", help="tiny, ct, max-pdu, concurrent, ...")
    parser.add_argument("--repeat", type=int, default=5, help="send the data this often")
    parser.add_argument("--durable", action="store_true", help="profile the fsync default")
    parser.add_argument(
        "--idle",
        action="store_true",
        help="also sample waiting threads (wall time; default: on-CPU samples only)",
    )
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--output", type=Path, help="folded stacks file (default: temp dir)")
    args = parser.parse_args(argv)

    # On PATH, or beside this Python (a virtual environment run without activating it).
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if py_spy is None:
        raise BenchmarkError("py-spy not found: pip install py-spy")
    (scenario,) = select(scenarios(FULL), [args.scenario])
    dcmrecv = find_dcmtk_tool("dcmrecv")
    tools = Tools(
        dcmrecv=dcmrecv,
        storescu=find_dcmtk_tool("storescu"),
        echoscu=find_dcmtk_tool("echoscu"),
        ours=OURS_DEFAULT,
        stand_in=False,
        config=Path("/etc/dcmtk/storescp.cfg"),
    )
    work = Path(tempfile.mkdtemp(prefix="dcmrecv-profile-"))
    output = args.output or work.parent / f"dcmrecv-profile-{scenario.key}.folded"
    try:
        cache: dict[str, Dataset] = {}
        dataset = prepare(scenario, FULL, work, cache)
        out = work / "out"
        out.mkdir()
        port = free_port()
        variant = OURS_DURABLE if args.durable else OURS
        command = receiver_command(tools, variant, scenario, out, port)
        with Receiver(command, port, tools.echoscu, work / "receiver.log") as receiver:
            cpu_before = tree_cpu_seconds(receiver.pid)
            spy_argv = [py_spy, "record", "--pid", str(receiver.pid), "-f", "raw"]
            spy_argv += ["-r", str(args.rate), "-o", str(output)]
            if args.idle:
                spy_argv.append("--idle")
            spy = subprocess.Popen(spy_argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for _ in range(args.repeat):
                for directory in dataset.directories:
                    sender = sender_command(tools, scenario, directory, port)
                    _send(sender)
                shutil.rmtree(out)
                out.mkdir()
            cpu = tree_cpu_seconds(receiver.pid) - cpu_before
        # py-spy writes its file when the process it samples exits.
        _, spy_errors = spy.communicate(timeout=60)
        if spy.returncode != 0:
            raise BenchmarkError(f"py-spy failed: {spy_errors.decode(errors='replace')}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    profile = summarize_folded(output.read_text().splitlines())
    print(f"# Profile of our receiver: {scenario.title}, sent {args.repeat} times\n")
    kind = "every thread, waiting or not (--idle)" if args.idle else "on-CPU samples only"
    print(
        f"{kind}; receiver CPU over the run {cpu:.2f} s (utime + stime),"
        f" samples / rate {profile.total / args.rate:.2f} s\n"
    )
    print(top_table(profile, args.top))
    print(f"\nfolded stacks: {output}")
    return 0


def _send(command: Command) -> None:
    result = subprocess.run(
        command.argv, capture_output=True, env=command.environment(), check=False
    )
    if result.returncode != 0:
        raise BenchmarkError(f"sender failed: {result.stdout.decode(errors='replace')[-2000:]}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchmarkError as error:
        print(f"profile failed: {error}", file=sys.stderr)
        sys.exit(1)

"""The stage engine, in-process on toy stages: a change reruns exactly the stages that read it.

Each toy stage records that it ran and writes one output file derived from what it reads, so every
test can say precisely which stages ran and check that the outputs are right afterwards.
"""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path

import pytest

from pebuilder.engine import fingerprint, stages
from pebuilder.engine.stages import Engine, Stage, StageGraphError


class Toy:
    """Inputs: src.txt (a file), tree/ (a folder), `value` (a config value), `chain_value`.

    a   <- src.txt                 (output: src.txt stripped)
    b   <- tree/                   (output: the names in tree/)
    c   <- value                   (output: the value as JSON)
    d   <- after a                 (output: a's output, upper-cased)
    e   <- after d, b              (output: d's and b's outputs)
    p1, p2, p3: chain "edit" editing work/ in place; p2 <- chain_value, p3 publishes work/log
    f   <- after p3
    """

    def __init__(self, root: Path):
        self.root = root
        self.value = {"x": 1}
        self.chain_value = "one"
        self.calls: list[str] = []
        self.fail: set[str] = set()
        (root / "tree").mkdir(parents=True)
        (root / "tree/t1").write_text("t1\n")
        (root / "src.txt").write_text("hello\n")
        self.engine: Engine | None = None

    def out(self, name: str) -> Path:
        return self.root / "out" / name

    def _writer(self, name: str, produce):
        def action() -> str:
            self.calls.append(name)
            if name in self.fail:
                raise RuntimeError(f"stage {name} killed")
            body = produce()
            self.out(name).parent.mkdir(exist_ok=True)
            self.out(name).write_text(body)
            return f"{name} wrote {len(body)} bytes"

        return action

    def _edit(self, name: str, edit):
        def action() -> None:
            self.calls.append(name)
            if name in self.fail:
                raise RuntimeError(f"stage {name} killed")
            edit()

        return action

    def stages(self) -> list[Stage]:
        r, out = self.root, self.out
        work = r / "work"

        def p1() -> None:
            work.mkdir(exist_ok=True)
            (work / "log").write_text("base\n")

        def p2() -> None:
            with open(work / "log", "a") as f:  # an in-place edit: only correct after p1 ran
                f.write(self.chain_value + "\n")

        def p3() -> None:
            out("p3").parent.mkdir(exist_ok=True)
            out("p3").write_text((work / "log").read_text())

        return [
            Stage("a", self._writer("a", lambda: (r / "src.txt").read_text().strip()), files=[r / "src.txt"],
                  outputs=[out("a")]),
            Stage("b", self._writer("b", lambda: " ".join(sorted(p.name for p in (r / "tree").iterdir()))),
                  trees=[r / "tree"], outputs=[out("b")]),
            Stage("c", self._writer("c", lambda: json.dumps(self.value)), values=lambda: dict(self.value),
                  outputs=[out("c")]),
            Stage("d", self._writer("d", lambda: out("a").read_text().upper()), after=["a"], outputs=[out("d")]),
            Stage("e", self._writer("e", lambda: out("d").read_text() + "|" + out("b").read_text()),
                  after=["d", "b"], outputs=[out("e")]),
            Stage("p1", self._edit("p1", p1), chain="edit"),
            Stage("p2", self._edit("p2", p2), chain="edit", values=lambda: self.chain_value),
            Stage("p3", self._edit("p3", p3), chain="edit", outputs=[out("p3")]),
            Stage("f", self._writer("f", lambda: out("p3").read_text()[::-1]), after=["p3"], outputs=[out("f")]),
        ]

    def run(self, only: set[str] | None = None) -> list[str]:
        """One build, as a fresh process would do it (new Engine, state read from disk)."""
        self.calls = []
        self.engine = Engine(self.root / "state")
        results = self.engine.run(self.stages(), only)
        assert [r.name for r in results if r.ran] == self.calls
        return self.calls


ALL = ["a", "b", "c", "d", "e", "p1", "p2", "p3", "f"]


@pytest.fixture
def toy(tmp_path) -> Toy:
    t = Toy(tmp_path)
    assert t.run() == ALL
    assert t.out("e").read_text() == "HELLO|t1" and t.out("p3").read_text() == "base\none\n"
    return t


def test_no_op_run_runs_nothing_and_reads_no_file(toy):
    assert toy.run() == []
    assert toy.engine is not None and toy.engine.hashes.reads == 0
    report = toy.engine.report()
    assert report["hashed_files"] == 0 and [s["stage"] for s in report["stages"]] == ALL
    assert not any(s["ran"] for s in report["stages"])


def test_file_input_reruns_its_readers_only(toy):
    (toy.root / "src.txt").write_text("world\n")
    assert toy.run() == ["a", "d", "e"]
    assert toy.out("e").read_text() == "WORLD|t1"
    # src.txt, then the outputs of a and d for their tokens; e's output is read by no stage: not hashed
    assert toy.engine.hashes.reads == 3


def test_touched_file_with_same_content_reruns_nothing(toy):
    import os

    src = toy.root / "src.txt"
    st = src.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert toy.run() == []
    assert toy.engine.hashes.reads == 1  # looked at again (new mtime), found unchanged
    assert toy.run() == [] and toy.engine.hashes.reads == 0  # and remembered


def test_folder_input_reruns_its_readers_only(toy):
    (toy.root / "tree/t2").write_text("t2\n")
    assert toy.run() == ["b", "e"]
    assert toy.out("e").read_text() == "HELLO|t1 t2"
    # a content change of a file inside the folder counts too, even with its size and names unchanged
    (toy.root / "tree/t2").write_text("T2\n")
    assert toy.run() == ["b"]  # b's output (the names) is byte-identical: e does not rerun
    (toy.root / "tree/t2").chmod(0o600)
    assert toy.run() == ["b"]


def test_value_input_reruns_its_readers_only(toy):
    toy.value = {"x": 2}
    assert toy.run() == ["c"]
    assert json.loads(toy.out("c").read_text()) == {"x": 2}
    toy.value = {"x": 2}
    assert toy.run() == []


def test_after_dependency_reruns_dependants_transitively(toy):
    (toy.root / "src.txt").write_text("bye\n")
    assert toy.run(only={"a"}) == ["a"]  # d and e not asked for: left stale
    assert toy.out("d").read_text() == "HELLO"
    assert toy.run() == ["d", "e"]  # a's new token makes its readers run, and only them
    assert toy.out("e").read_text() == "BYE|t1"


def test_byte_identical_output_does_not_rerun_dependants(toy):
    (toy.root / "src.txt").write_text("  hello  \n\n")  # a reruns, but writes "hello" again
    assert toy.run() == ["a"]
    assert toy.out("d").read_text() == "HELLO"


def test_missing_output_reruns_that_stage(toy):
    toy.out("c").unlink()
    assert toy.run() == ["c"]
    assert toy.out("c").read_text() == '{"x": 1}'


def test_chain_reruns_as_a_unit(toy):
    toy.chain_value = "two"
    assert toy.run() == ["p1", "p2", "p3", "f"]
    # run from its first stage, the in-place edit does not accumulate
    assert toy.out("p3").read_text() == "base\ntwo\n"
    assert toy.out("f").read_text() == "base\ntwo\n"[::-1]
    # `only` naming one member runs the whole chain
    toy.chain_value = "three"
    assert toy.run(only={"p3"}) == ["p1", "p2", "p3"]
    assert toy.out("p3").read_text() == "base\nthree\n"


def test_stage_killed_mid_run_reruns_next_time(toy):
    (toy.root / "src.txt").write_text("again\n")
    toy.fail = {"d"}
    with pytest.raises(RuntimeError, match="stage d killed"):
        toy.run()
    assert toy.calls == ["a", "d"]
    toy.fail = set()
    assert toy.run() == ["d", "e"]  # a finished and is not redone; d is
    assert toy.out("e").read_text() == "AGAIN|t1"
    assert toy.run() == []


def test_chain_killed_mid_run_reruns_whole_chain(toy):
    toy.chain_value = "two"
    toy.fail = {"p2"}
    with pytest.raises(RuntimeError):
        toy.run()
    assert toy.calls == ["p1", "p2"]
    toy.fail = set()
    toy.chain_value = "one"  # back to the recorded value: the chain must still rerun, it was half done
    assert toy.run() == ["p1", "p2", "p3"]
    assert toy.out("p3").read_text() == "base\none\n"


def test_source_digest_is_part_of_every_key(toy, monkeypatch):
    monkeypatch.setattr(stages, "source_digest", lambda: "another pebuilder")
    assert toy.run() == ALL
    assert toy.run() == []


def test_force_reruns_everything(toy):
    toy.calls = []
    Engine(toy.root / "state", force=True).run(toy.stages())
    assert toy.calls == ALL


def test_each_key_computed_once_and_each_file_read_once(tmp_path, monkeypatch):
    """Two stages read one file: in one run its content is read once, and each stage's key made once."""
    src = tmp_path / "shared.bin"
    src.write_bytes(b"x" * 100_000)
    outs = [tmp_path / "o1", tmp_path / "o2"]
    evaluated: collections.Counter[str] = collections.Counter()

    def values(name: str):
        def get():
            evaluated[name] += 1
            return name

        return get

    def make() -> list[Stage]:
        return [Stage(f"s{i}", lambda i=i: outs[i].write_bytes(src.read_bytes()), files=lambda: [src],
                      values=values(f"s{i}"), outputs=[outs[i]]) for i in range(2)]

    keys: collections.Counter[str] = collections.Counter()
    real_key = Engine.key

    def counting_key(self, stage, unit_names=()):
        keys[stage.name] += 1
        return real_key(self, stage, unit_names)

    reads: collections.Counter[str] = collections.Counter()
    real_sha = fingerprint.file_sha256

    def counting_sha(p):
        reads[Path(p).name] += 1
        return real_sha(p)

    monkeypatch.setattr(Engine, "key", counting_key)
    monkeypatch.setattr(fingerprint, "file_sha256", counting_sha)
    for _ in range(2):  # a first run, and a run after a change of the shared file
        keys.clear(), reads.clear(), evaluated.clear()
        Engine(tmp_path / "state").run(make())
        assert keys == {"s0": 1, "s1": 1} and evaluated == {"s0": 1, "s1": 1}
        assert reads == {"shared.bin": 1}  # o1 and o2 are read by no stage: no output digest is made
        src.write_bytes(b"y" * 100_000)


def test_only_outputs_other_stages_read_are_hashed(tmp_path, monkeypatch):
    """A final output (a sparse 20 GiB disk image) is not read back for a token nobody compares."""
    reads: list[str] = []
    real_sha = fingerprint.file_sha256
    monkeypatch.setattr(fingerprint, "file_sha256", lambda p: reads.append(Path(p).name) or real_sha(p))
    mid, final = tmp_path / "mid", tmp_path / "final.raw"
    graph = [Stage("mid", lambda: mid.write_bytes(b"m"), outputs=[mid]),
             Stage("disk", lambda: final.write_bytes(b"d" * 4096), after=["mid"], outputs=[final])]
    Engine(tmp_path / "state").run(graph)
    assert reads == ["mid"]
    final.unlink()  # a missing final output still reruns its stage
    assert [r.name for r in Engine(tmp_path / "state").run(graph) if r.ran] == ["disk"]


@pytest.mark.parametrize("names,chains,after,message", [
    (["a", "b"], [None, None], {"b": ["nosuch"]}, "stage 'b' reads 'nosuch', which is not a stage before it"),
    (["a", "b"], [None, None], {"a": ["b"]}, "stage 'a' reads 'b', which is not a stage before it"),
    (["a", "a"], [None, None], {}, "stage 'a' is declared twice"),
    (["a", "b", "c"], ["x", None, "x"], {}, "chain 'x' is split"),
])
def test_bad_stage_graphs_are_refused_before_anything_runs(tmp_path, names, chains, after, message):
    calls = []
    graph = [Stage(n, lambda n=n: calls.append(n), chain=c, after=after.get(n, ()))
             for n, c in zip(names, chains, strict=True)]
    with pytest.raises(StageGraphError, match=message):
        Engine(tmp_path / "state").run(graph)
    assert calls == []


def test_damaged_state_files_only_cost_a_rebuild(toy):
    (toy.root / "state/stages.json").write_text("{not json")
    (toy.root / "state/hashes.json").write_text("[1, 2")
    assert toy.run() == ALL
    assert toy.run() == []


def _same_tick_edit(path: Path, text: str) -> None:
    """An in-place edit (same inode, same size) that lands in the same timestamp tick as the last one."""
    before = path.stat()
    with open(path, "r+") as f:
        f.write(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)


def test_an_input_edited_within_one_timestamp_tick_of_being_read_is_not_missed(tmp_path, monkeypatch):
    """git's "racy clean" case: (size, mtime, inode) cannot see this edit, so a record made while the
    file was that fresh is not trusted; the next run reads it again and rebuilds."""
    user, work = tmp_path / "user", tmp_path / "work"
    user.mkdir()
    src = user / "motd.txt"
    src.write_text("hello\n")
    seen: list[str] = []

    def stage() -> Stage:
        return Stage("copy", lambda: seen.append(src.read_text()) or "copied", files=[src])

    # A tick as long as this test (a busy machine may pause it for longer than a real tick).
    monkeypatch.setattr(fingerprint, "RACY_FINE_NS", 60 * 10**9)
    Engine(work / "state").run([stage()])
    _same_tick_edit(src, "HELLO\n")
    engine = Engine(work / "state")
    engine.run([stage()])
    assert seen == ["hello\n", "HELLO\n"] and engine.hashes.reads == 1
    # Read once the file has aged (the tick is over), the record is trusted: a no-op reads nothing.
    monkeypatch.setattr(fingerprint, "RACY_FINE_NS", 0)
    Engine(work / "state").run([stage()])  # re-reads the fresh record, now trusts it
    engine = Engine(work / "state")
    engine.run([stage()])
    assert seen == ["hello\n", "HELLO\n"] and engine.hashes.reads == 0


def test_files_pebuilder_writes_are_trusted_at_once(tmp_path, monkeypatch):
    """The work folder and the download cache are written by replacing files (new inodes), never in
    place, so even a fresh record of a file there is trusted: a no-op right after a build reads nothing."""
    monkeypatch.setattr(fingerprint, "RACY_FINE_NS", 60 * 10**9)  # every file here is fresh
    work = tmp_path / "work"
    (work / "tree").mkdir(parents=True)
    (work / "tree/product").write_text("made a moment ago\n")
    cache = fingerprint.HashCache(tmp_path / "hashes.json", ours=[work])
    cache.file(work / "tree/product")
    cache.save()
    again = fingerprint.HashCache(tmp_path / "hashes.json", ours=[work])
    again.file(work / "tree/product")
    assert again.reads == 0
    # The same fresh file, not declared ours: its record is not trusted, the next run reads it again.
    elsewhere = fingerprint.HashCache(tmp_path / "elsewhere.json")
    elsewhere.file(work / "tree/product")
    elsewhere.save()
    later = fingerprint.HashCache(tmp_path / "elsewhere.json")
    later.file(work / "tree/product")
    assert later.reads == 1

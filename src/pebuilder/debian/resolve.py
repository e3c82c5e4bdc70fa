"""Which packages a minimal install of some Debian packages adds, in an order dpkg can unpack.

This follows what `apt-get install --no-install-recommends` would choose on a system holding the
`have` set, without apt (which cannot see another architecture's packages without changing the
host):

- Depends and Pre-Depends are followed; Recommends and Suggests are not.
- `a | b`: the first alternative already present (in the base or chosen so far) wins; otherwise the
  first one that has an installable candidate. If that one turns out to be unresolvable further
  down, the next alternative is tried.
- Version constraints (`>=`, `<=`, `=`, `>>`, `<<`) are checked against the single candidate the
  index holds per name (the highest version, as apt's default pinning picks).
- A virtual name is satisfied by any package providing it (with a matching version when the
  dependency has one). One provider: that one; several: one already present, else the first by
  name, and a note says so.
- `:any`/`:native` qualifiers refer to the same single-architecture index; an explicit foreign
  architecture qualifier is unresolvable here.
- Conflicts, Breaks and Replaces are not evaluated (a minimal closure rarely meets them; dpkg
  would refuse at install time).

The order puts every package after what it depends on, except inside dependency loops (which
Debian has, e.g. libc6 ↔ libgcc-s1); even there Pre-Depends come strictly first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pebuilder.debian.archive import Archive, Dep, Package, parse_provides, version_compare
from pebuilder.errors import Exit, PebuilderError

INSTALLED_STATES = {"installed", "triggers-pending", "triggers-awaited"}


class UnresolvableError(PebuilderError):
    """A requested package whose dependencies the index cannot satisfy."""

    code = Exit.UNRESOLVABLE


# -- what the base holds ----------------------------------------------------------------------------


@dataclass
class Have:
    """Packages the base already holds (name → version) and what they provide."""

    versions: dict[str, str] = field(default_factory=dict)
    provides: dict[str, list[tuple[str, str | None]]] = field(default_factory=dict)  # virtual → providers
    # Counted as present without being there (a tiny base's packaging-only packages): a dependency on
    # them is met, but asked for by name they are still added (see without()).
    assumed: frozenset[str] = frozenset()

    def without(self, names: Iterable[str]) -> Have:
        """This base minus the assumed packages among `names`, so that asking for one by name adds it."""
        drop = self.assumed & set(names)
        if not drop:
            return self
        return Have({n: v for n, v in self.versions.items() if n not in drop},
                    {virt: [(n, v) for n, v in provs if n not in drop] for virt, provs in self.provides.items()},
                    self.assumed - drop)

    @classmethod
    def from_status(cls, text: str) -> Have:
        """From a dpkg status file (installed packages only), provides included."""
        have = cls()
        for para in _status_paragraphs(text):
            name, version = para.get("Package"), para.get("Version")
            if not name or not version or not _installed(para.get("Status", "")):
                continue
            have.versions[name] = version
            for virtual, ver in parse_provides(para.get("Provides", "")):
                have.provides.setdefault(virtual, []).append((name, ver))
        return have

    @classmethod
    def from_versions(cls, versions: Mapping[str, str], archive: Archive) -> Have:
        """From names and versions only: provides are taken from the index's entry of each name."""
        have = cls(dict(versions))
        for name in versions:
            pkg = archive.get(name)
            if pkg is not None:
                for virtual, ver in pkg.provides:
                    have.provides.setdefault(virtual, []).append((name, ver))
        return have


def _installed(status: str) -> bool:
    words = status.split()
    return len(words) == 3 and words[2] in INSTALLED_STATES


def _status_paragraphs(text: str) -> Iterable[Mapping[str, str]]:
    from debian.deb822 import Deb822

    return Deb822.iter_paragraphs(text.splitlines(True), fields=["Package", "Version", "Status", "Provides"],
                                  use_apt_pkg=False)


def dpkg_status_have(text: str) -> dict[str, str]:
    """name → version of the installed packages in a dpkg status file (e.g. of a minbase tree)."""
    return Have.from_status(text).versions


# -- the result -------------------------------------------------------------------------------------


@dataclass
class Resolution:
    packages: list[Package]  # to add, dependencies first
    requested: list[str]
    direct: dict[str, list[str]]  # every added package → its direct dependencies that are added too
    notes: list[str]

    def added_deps(self, name: str) -> list[str]:
        """Direct dependencies of `name` that had to be added (for an extension's .dep file)."""
        return list(self.direct.get(name, []))

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.packages]


# -- the resolver -----------------------------------------------------------------------------------

_OPS = {
    ">=": lambda c: c >= 0, "<=": lambda c: c <= 0, "=": lambda c: c == 0,
    ">>": lambda c: c > 0, "<<": lambda c: c < 0,
}


def satisfies(version: str | None, dep: Dep) -> bool:
    """Does `version` meet the dependency's constraint? (No constraint: any version, even none.)"""
    if dep.op is None:
        return True
    if version is None:
        return False  # an unversioned Provides never meets a versioned dependency
    test = _OPS.get(dep.op)
    if test is None:
        raise UnresolvableError(f"unknown version operator {dep.op!r} in {dep}")
    return test(version_compare(version, dep.version or ""))


class _Resolver:
    def __init__(self, archive: Archive, have: Have):
        self.archive = archive
        self.have = have
        self.native = archive.arch.debian
        self.chosen: dict[str, Package] = {}
        self.provided: dict[str, list[tuple[str, str | None]]] = {}
        self.edges: dict[str, list[tuple[str, bool]]] = {}  # name → [(dependency, is Pre-Depends)]
        self.finished: list[str] = []
        self.notes: list[str] = []
        self.wanted: set[str] = set()  # asked for by name: the choice among alternatives and providers

    # -- presence and candidates -------------------------------------------------------------------

    def _arch_ok(self, dep: Dep) -> bool:
        return dep.archqual in (None, "any", "native", self.native, "all")

    def present(self, dep: Dep) -> tuple[str, bool] | None:
        """(name, is it one we add) of something already there that satisfies `dep`."""
        if not self._arch_ok(dep):
            return None
        pkg = self.chosen.get(dep.name)
        if pkg is not None and satisfies(pkg.version, dep):
            return dep.name, True
        if dep.name not in self.chosen and dep.name in self.have.versions \
                and satisfies(self.have.versions[dep.name], dep):
            return dep.name, False
        for provider, ver in self.provided.get(dep.name, ()):
            if satisfies(ver, dep):
                return provider, True
        for provider, ver in self.have.provides.get(dep.name, ()):
            if satisfies(ver, dep):
                return provider, False
        return None

    def candidates(self, dep: Dep) -> tuple[list[Package], str]:
        """Installable packages for `dep` (the real one first, then providers by name), or why none."""
        if not self._arch_ok(dep):
            return [], f"{dep}: architecture {dep.archqual} is not {self.native}"
        found: list[Package] = []
        why = ""
        real = self.archive.get(dep.name)
        if real is not None:
            if dep.name in self.chosen:
                why = f"{dep} needed but {self.chosen[dep.name]} is already chosen"
            elif satisfies(real.version, dep):
                found.append(real)
            else:
                why = f"{dep} needed but the index has {real.version}"
        for provider, ver in self.archive.providers(dep.name):
            if provider not in self.chosen and satisfies(ver, dep):
                pkg = self.archive.get(provider)
                if pkg is not None and pkg not in found:
                    found.append(pkg)
        found.sort(key=lambda p: p.name not in self.wanted)  # stable: otherwise the real one first
        if not found and not why:
            why = f"no package {dep.name} (nor one providing it) for {self.native}"
            if dep.op:
                providers = self.archive.providers(dep.name)
                if providers:
                    why = f"{dep}: only unversioned or other-version providers ({providers[0][0]}, …)"
        return found, why

    # -- the walk ---------------------------------------------------------------------------------

    def request(self, name: str) -> None:
        base, _, qual = name.partition(":")
        dep = Dep(base, archqual=qual or None)
        if base in self.chosen:
            return
        if base in self.have.versions and base not in self.chosen:
            self.notes.append(f"{base}: already in the base ({self.have.versions[base]}), not added")
            return
        if self.archive.get(base) is None:
            providers = self.archive.providers(base)
            hit = self.present(dep)
            if hit is not None:
                self.notes.append(f"{base}: virtual, already provided by {hit[0]}")
                return
            if not providers:
                self.archive.package(base)  # raises the index's clear "no such package" error
        self.satisfy((dep,), [base])

    def add(self, pkg: Package, chain: list[str]) -> None:
        self.chosen[pkg.name] = pkg
        for virtual, ver in pkg.provides:
            self.provided.setdefault(virtual, []).append((pkg.name, ver))
        edges: list[tuple[str, bool]] = []
        self.edges[pkg.name] = edges
        if pkg.name in self.have.versions:
            self.notes.append(f"{pkg.name}: the base has {self.have.versions[pkg.name]}, adding {pkg.version} "
                              f"for {chain[-2] if len(chain) > 1 else 'the request'}")
        for is_pre, groups in ((True, pkg.pre_depends), (False, pkg.depends)):
            for group in groups:
                target = self.satisfy(group, [*chain, " | ".join(map(str, group))])
                if target is not None and target != pkg.name and (target, is_pre) not in edges:
                    edges.append((target, is_pre))
        self.finished.append(pkg.name)

    def satisfy(self, group: tuple[Dep, ...], chain: list[str]) -> str | None:
        """Make one dependency group hold; returns the added package that does it (None: the base)."""
        for dep in group:
            hit = self.present(dep)
            if hit is not None:
                return hit[0] if hit[1] else None
        reasons: list[str] = []
        # An alternative asked for by name wins (debootstrap's mawk over gawk for awk, usr-is-merged
        # over usrmerge): the request would add it anyway.
        group = tuple(sorted(group, key=lambda d: d.name not in self.wanted))
        for i, dep in enumerate(group):
            found, why = self.candidates(dep)
            if not found:
                reasons.append(why)
                continue
            pkg = found[0]
            if len(found) > 1 and pkg.name != dep.name:
                self.notes.append(f"{dep.name} is provided by {', '.join(p.name for p in found)}; chose {pkg.name} "
                                  f"(for {chain[-2] if len(chain) > 1 else 'the request'})")
            last = i == len(group) - 1
            saved = None if last else self._save()
            try:
                self.add(pkg, [*chain[:-1], str(dep)] if len(group) > 1 else chain)
                return pkg.name
            except UnresolvableError as exc:
                if saved is None:
                    raise
                self._restore(saved)
                reasons.append(f"{dep}: {exc.args[0]}")
        raise UnresolvableError(f"cannot install {chain[0]}: {' → '.join(chain)}: {'; '.join(reasons)}")

    def _save(self) -> tuple:
        return (dict(self.chosen), {k: list(v) for k, v in self.provided.items()},
                {k: list(v) for k, v in self.edges.items()}, len(self.finished), len(self.notes))

    def _restore(self, saved: tuple) -> None:
        self.chosen, self.provided, self.edges, nfin, nnotes = saved
        del self.finished[nfin:]
        del self.notes[nnotes:]

    # -- order ------------------------------------------------------------------------------------

    def order(self) -> list[str]:
        """Dependencies first: strongly connected components in topological order (Tarjan), and
        inside a loop Pre-Depends first, then the order in which the walk finished packages."""
        finish = {n: i for i, n in enumerate(self.finished)}
        nodes = sorted(self.chosen, key=lambda n: finish.get(n, len(finish)))
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        on_stack: set[str] = set()
        stack: list[str] = []
        out: list[str] = []
        counter = 0
        for start in nodes:
            if start in index:
                continue
            work = [(start, 0)]
            while work:
                node, i = work.pop()
                if i == 0:
                    index[node] = low[node] = counter
                    counter += 1
                    stack.append(node)
                    on_stack.add(node)
                succ = [d for d, _ in self.edges.get(node, ()) if d in self.chosen]
                recurse = False
                while i < len(succ):
                    nxt = succ[i]
                    i += 1
                    if nxt not in index:
                        work.append((node, i))
                        work.append((nxt, 0))
                        recurse = True
                        break
                    if nxt in on_stack:
                        low[node] = min(low[node], index[nxt])
                if recurse:
                    continue
                if low[node] == index[node]:
                    scc = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        scc.append(w)
                        if w == node:
                            break
                    out.extend(self._order_loop(scc, finish))
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
        return out

    def _order_loop(self, scc: list[str], finish: dict[str, int]) -> list[str]:
        if len(scc) == 1:
            return scc
        members = set(scc)
        pre = {n: {d for d, is_pre in self.edges.get(n, ()) if is_pre and d in members} for n in scc}
        ordered: list[str] = []
        done: set[str] = set()
        pending = sorted(scc, key=lambda n: finish.get(n, 0))
        while pending:
            ready = next((n for n in pending if pre[n] <= done), None)
            if ready is None:
                raise UnresolvableError(f"Pre-Depends loop among {', '.join(sorted(pending))}; dpkg cannot "
                                        "unpack these in any order")
            ordered.append(ready)
            done.add(ready)
            pending.remove(ready)
        return ordered


def resolve(requested: Iterable[str], archive: Archive, have: Have | Mapping[str, str] | None = None) -> Resolution:
    """The packages to add for `requested` on top of `have`, dependencies first."""
    if have is None:
        have = Have()
    elif not isinstance(have, Have):
        have = Have.from_versions(have, archive)
    names = list(dict.fromkeys(requested))
    r = _Resolver(archive, have)
    r.wanted = {n.partition(":")[0] for n in names}
    for name in names:
        r.request(name)
    order = r.order()
    packages = [r.chosen[n] for n in order]
    direct = {n: list(dict.fromkeys(d for d, _ in r.edges.get(n, ()) if d in r.chosen)) for n in order}
    for name in names:
        direct.setdefault(name.partition(":")[0], [])
    return Resolution(packages, [n.partition(":")[0] for n in names], direct, r.notes)

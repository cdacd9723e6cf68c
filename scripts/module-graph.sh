#!/usr/bin/env bash
# The import graph of the workspace's Rust sources, file by file: one line per edge
# `from -> to` (a `use` of, or a path through, an item of another file: `crate::…`, `super::…`,
# `self::…`, another workspace crate's `name::…`), then the import circles, if any.
#
#   scripts/module-graph.sh                    # every crate of the workspace
#   scripts/module-graph.sh target-warehouse   # the crates (directories) named
#   scripts/module-graph.sh --cycles [CRATE…]  # only the circles
#
# Exits 1 when there is a circle. Comments and string literals are skipped; `mod x;`
# declarations are not edges (a parent declaring its child is not an import); a path is
# resolved to the deepest module that is a file (`crate::table::files::FileSink` →
# table/files.rs; an item of an inline `mod tests` belongs to its file). Test modules count:
# an import is an import.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 - "$@" <<'PY'
import os, re, sys

args = sys.argv[1:]
only_cycles = "--cycles" in args
crates = [a.rstrip("/") for a in args if a != "--cycles"]
if not crates:
    text = open("Cargo.toml").read()
    members = re.search(r"members\s*=\s*\[([^\]]*)\]", text)
    crates = re.findall(r'"([^"]+)"', members.group(1)) if members else []

def crate_name(d):
    m = re.search(r'^\s*name\s*=\s*"([^"]+)"', open(os.path.join(d, "Cargo.toml")).read(), re.M)
    return m.group(1).replace("-", "_")

def strip(src):
    """Code with comments and string/char literals blanked (lines kept)."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if src.startswith("/*", i): depth, i = depth + 1, i + 2
                elif src.startswith("*/", i): depth, i = depth - 1, i + 2
                else:
                    if src[i] == "\n": out.append("\n")
                    i += 1
        elif re.match(r'b?r#*"', src[i:i + 260]) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            m = re.match(r'(b?r)(#*)"', src[i:])
            end = '"' + m.group(2)
            j = src.find(end, i + len(m.group(0)))
            j = n if j < 0 else j + len(end)
            out.append('""' + "\n" * src.count("\n", i, j)); i = j
        elif c == '"' or (c == "b" and src.startswith('b"', i) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_"))):
            j = i + (2 if c == "b" else 1)
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append('""' + "\n" * src.count("\n", i, j)); i = j + 1
        elif c == "'":
            m = re.match(r"'(\\.[^']*|[^\\'])'", src[i:])
            if m: out.append("' '"); i += len(m.group(0))
            else: out.append(c); i += 1
        else:
            out.append(c); i += 1
    return "".join(out)

def expand(tree):
    """`a::{b, c::{d, self}}` → ['a::b', 'a::c::d', 'a::c']."""
    tree = re.sub(r"\s+as\s+\w+", "", tree)   # `x as y` imports x
    tree = re.sub(r"\s+", "", tree)
    def parse(s, prefix):
        paths, depth, start = [], 0, 0
        parts = []
        for k, ch in enumerate(s):
            if ch == "{": depth += 1
            elif ch == "}": depth -= 1
            elif ch == "," and depth == 0:
                parts.append(s[start:k]); start = k + 1
        parts.append(s[start:])
        for p in filter(None, parts):
            if "{" in p:
                head, rest = p.split("{", 1)
                paths += parse(rest[:-1], prefix + head)
            else:
                full = prefix + p
                paths.append(full[:-6] if full.endswith("::self") else full)
        return paths
    return parse(tree, "")

files, modfile = {}, {}   # file → (crate, module path); (crate, module path) → file
roots = {}
for d in crates:
    src = os.path.join(d, "src")
    if not os.path.isdir(src):
        continue
    name = crate_name(d)
    roots[name] = d
    for dirpath, _, names in os.walk(src):
        for f in names:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, src)[:-3].split(os.sep)
            if rel[-1] == "mod": rel = rel[:-1]
            if rel in (["lib"], ["main"]) or (len(rel) == 2 and rel[0] == "bin"): mod = ()
            else: mod = tuple(rel)
            files[path] = (name, mod)
            if rel != ["main"] and not (len(rel) == 2 and rel[0] == "bin"):
                modfile[(name, mod)] = path

def resolve(crate, segs):
    for k in range(len(segs), -1, -1):
        f = modfile.get((crate, tuple(segs[:k])))
        if f: return f
    return None

PATH = re.compile(r"(?<![\w:])((?:crate|super|self|[a-z_][a-z0-9_]*)(?:::[A-Za-z_][A-Za-z0-9_]*)+)")
edges = set()
for path, (crate, mod) in sorted(files.items()):
    code = strip(open(path).read())
    # Inline modules: (start offset, end offset, name), to resolve `super` inside them.
    inline = []
    for m in re.finditer(r"\bmod\s+(\w+)\s*\{", code):
        depth, k = 1, m.end()
        while k < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[k], 0); k += 1
        inline.append((m.start(), k, m.group(1)))
    def module_at(pos):
        return list(mod) + [name for (a, b, name) in inline if a <= pos < b]
    found = []
    for m in re.finditer(r"\buse\s+([^;]+);", code):
        found += [(m.start(), p) for p in expand(m.group(1))]
    blanked = re.sub(r"\buse\s+[^;]+;", lambda m: " " * len(m.group(0)), code)
    found += [(m.start(), m.group(1)) for m in PATH.finditer(blanked)]
    for pos, p in found:
        segs = p.split("::")
        here = module_at(pos)
        if segs[0] == "crate":
            target = resolve(crate, segs[1:])
        elif segs[0] in ("super", "self"):
            cur = list(here)
            while segs and segs[0] in ("super", "self"):
                if segs.pop(0) == "super": cur = cur[:-1]
            target = resolve(crate, cur + segs)
        elif (crate, tuple(here + segs[:1])) in modfile:
            target = resolve(crate, here + segs)   # a child module, by its relative path
        elif segs[0] in roots:
            target = resolve(segs[0], segs[1:])
        else:
            continue
        if target and target != path:
            edges.add((path, target))

# Circles: strongly connected components of more than one file (Tarjan).
graph = {}
for a, b in edges: graph.setdefault(a, set()).add(b)
index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)
def visit(v):
    index[v] = low[v] = counter[0]; counter[0] += 1; stack.append(v); on.add(v)
    for w in sorted(graph.get(v, ())):
        if w not in index: visit(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(sorted(comp))
for v in sorted(set(files)):
    if v not in index: visit(v)

if not only_cycles:
    for a, b in sorted(edges):
        print(f"{a} -> {b}")
for comp in sccs:
    inside = sorted((a, b) for a, b in edges if a in comp and b in comp)
    print("circle: " + ", ".join(comp))
    for a, b in inside:
        print(f"  {a} -> {b}")
if not sccs and only_cycles:
    print("no circles")
sys.exit(1 if sccs else 0)
PY

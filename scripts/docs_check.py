"""Reads the docs for scripts/docs-check.sh: `blocks FILE OUT` writes FILE's `sh runnable` blocks as one bash
script (each block announced with its line, so a failure names it); `links` fails on a relative link or
#anchor in README.md, ARCHITECTURE.md or docs/*.md that leads nowhere; `dashboard` fails on a series in
docs/grafana-dashboard.json that no source file writes."""

import json
import os
import re
import shlex
import sys

PAGES = ["README.md", "ARCHITECTURE.md"] + sorted(
    os.path.join("docs", name) for name in os.listdir("docs") if name.endswith(".md")
)


def blocks(page):
    """(line, text) of each fenced block whose info string is `sh runnable`."""
    found, fence, runnable, lines, start = [], False, False, [], 0
    for number, line in enumerate(open(page, encoding="utf-8").read().split("\n"), 1):
        if not fence and line.startswith("```"):
            fence, runnable, lines, start = True, line[3:].split() == ["sh", "runnable"], [], number
        elif fence and line.startswith("```"):
            if runnable:
                found.append((start, "\n".join(lines)))
            fence = False
        elif fence:
            lines.append(line)
    return found


def write_script(page, out):
    with open(out, "w", encoding="utf-8") as script:
        script.write("set -euo pipefail\n")
        for line, text in blocks(page):
            where = shlex.quote(f"{page}:{line}")
            script.write(f"echo \"## {where}\" >&2\ndocs_block={where}\n{text}\n")


def slug(heading):
    heading = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return heading.replace(" ", "-")


def anchors(page):
    names, seen, fence = set(), {}, False
    for line in open(page, encoding="utf-8").read().split("\n"):
        if line.startswith("```"):
            fence = not fence
        elif not fence and re.match(r"#{1,6} ", line):
            name = slug(line.lstrip("#"))
            count = seen.get(name, 0)
            seen[name] = count + 1
            names.add(name if count == 0 else f"{name}-{count}")
    return names


def check_links():
    broken = []
    for page in PAGES:
        text = open(page, encoding="utf-8").read()
        for target in re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
            if not os.path.exists(resolved):
                broken.append(f"{page}: {target}: no such file")
            elif anchor and resolved.endswith(".md") and anchor not in anchors(resolved):
                broken.append(f"{page}: {target}: no such heading")
    return broken


def check_dashboard():
    dashboard = json.load(open("docs/grafana-dashboard.json", encoding="utf-8"))
    written = "".join(
        open(os.path.join(root, name), encoding="utf-8").read()
        for root, _, names in os.walk("src")
        for name in names
        if name.endswith(".rs")
    )
    missing = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            for series in re.findall(r"\b((?:litellm|tiergate)_[a-z_]+)", target["expr"]):
                family = re.sub(r"_(bucket|sum|count)$", "", series)
                if not re.search(rf"\b{family}\b", written):
                    missing.append(f"{panel['title']}: {series}")
    return missing


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "pages":
        print("\n".join(page for page in PAGES if blocks(page)))
    elif command == "blocks":
        write_script(sys.argv[2], sys.argv[3])
    else:
        problems = check_links() if command == "links" else check_dashboard()
        for problem in problems:
            print(f"docs check: {problem}", file=sys.stderr)
        sys.exit(1 if problems else 0)

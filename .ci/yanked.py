#!/usr/bin/env python3
"""Fails when Cargo.lock pins a crates.io version that has been yanked.

cargo deny's own yanked check runs with its advisory database, which is fetched from GitHub and
cannot be reached from this project's machines; this asks the crates.io sparse index (which
cargo itself uses) directly. Usage: yanked.py Cargo.lock [Cargo.lock ...]
"""
import json
import sys
import tomllib
import urllib.request
from concurrent.futures import ThreadPoolExecutor

REGISTRY = "registry+https://github.com/rust-lang/crates.io-index"


def index_path(name: str) -> str:
    name = name.lower()
    if len(name) <= 2:
        return f"{len(name)}/{name}"
    if len(name) == 3:
        return f"3/{name[0]}/{name}"
    return f"{name[:2]}/{name[2:4]}/{name}"


def yanked(package):
    name, version = package
    url = f"https://index.crates.io/{index_path(name)}"
    with urllib.request.urlopen(url, timeout=30) as response:
        for line in response.read().decode().splitlines():
            entry = json.loads(line)
            if entry.get("vers") == version:
                return entry.get("yanked", False)
    raise RuntimeError(f"{name} {version} is not in the crates.io index")


def main() -> int:
    packages = set()
    for lock in sys.argv[1:]:
        with open(lock, "rb") as f:
            for p in tomllib.load(f).get("package", []):
                if p.get("source") == REGISTRY:
                    packages.add((p["name"], p["version"]))
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(zip(sorted(packages), pool.map(yanked, sorted(packages))))
    bad = [f"{name} {version}" for (name, version), is_yanked in results if is_yanked]
    if bad:
        print("yanked crates in the lock files (update them): " + ", ".join(bad))
        return 1
    print(f"no yanked crates among {len(packages)} crates.io packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())

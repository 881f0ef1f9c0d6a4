#!/usr/bin/env bash
# Vendors the browser libraries of web/ from the npm registry at pinned versions.
#
# For each package below: `npm pack` the exact version, check the tarball against the registry's
# sha512 integrity, copy the listed files into web/vendor/<name>/ with the package's licence, and
# record name, version, licence, integrity and each file's sha256 in web/vendor/manifest.json.
# Nothing is fetched at run time; tests/api/web.rs checks the files against the manifest.
# Needs npm and network access to the registry; run from anywhere: bash web/vendor/vendor.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

# name version files-in-package (space separated; copied flat into web/vendor/<name>/)
PACKAGES=(
  "echarts 6.1.0 dist/echarts.esm.min.mjs"
  "idb 8.0.4 build/index.js"
  "uqr 0.1.3 dist/index.mjs"
)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

entries=()
for line in "${PACKAGES[@]}"; do
  read -r name version files <<<"$line"
  echo "vendor: $name@$version"
  expected="$(npm view "$name@$version" dist.integrity)"
  (cd "$work" && npm pack "$name@$version" --silent >/dev/null)
  tarball="$work/$name-$version.tgz"
  actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
  if [ "$expected" != "$actual" ]; then
    echo "vendor: $name@$version: integrity mismatch (registry $expected, tarball $actual)" >&2
    exit 1
  fi
  mkdir -p "$work/$name"
  tar xzf "$tarball" -C "$work/$name"
  licence="$(node -p "require('$work/$name/package/package.json').license")"
  out="$here/$name"
  rm -rf "$out"
  mkdir -p "$out"
  file_entries=()
  for f in $files LICENSE; do
    src="$work/$name/package/$f"
    [ -f "$src" ] || { echo "vendor: $name@$version has no $f" >&2; exit 1; }
    base="$(basename "$f")"
    cp "$src" "$out/$base"
    sum="$(sha256sum "$out/$base" | cut -d' ' -f1)"
    file_entries+=("{\"path\": \"$name/$base\", \"sha256\": \"$sum\"}")
  done
  joined="$(IFS=,; echo "${file_entries[*]}")"
  entries+=("{\"name\": \"$name\", \"version\": \"$version\", \"licence\": \"$licence\", \"integrity\": \"$expected\", \"files\": [$joined]}")
done

joined="$(IFS=,; echo "${entries[*]}")"
node -e 'process.stdout.write(JSON.stringify({packages: JSON.parse(process.argv[1])}, null, 2) + "\n")' "[$joined]" \
  > "$here/manifest.json"
echo "vendor: wrote $here/manifest.json"

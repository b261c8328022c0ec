"""Regenerate tools/plots_page/page.html: the HTML template `dvc plots show` / `dvc plots diff`
fill (`plots.html_template` in .dvc/config), with Vega, Vega-Lite and Vega-Embed inlined so that
the page renders offline. DVC's own page loads them from a CDN.

    python tools/plots_page/build.py        # needs npm and the npm registry; writes page.html, vendored.json

The libraries are the npm packages' published UMD builds, fetched with `npm pack`, checked against
the integrity the registry records, and written with their versions, tarball URLs, integrity and
licences into the page's header comment and vendored.json. Versions: the newest of the majors
DVC's renderer targets (its CDN tags name vega@5, vega-lite@5, vega-embed@6; the specs it emits
declare Vega-Lite v5), so that vega-embed does not warn about a schema from another major.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PAGE = HERE / "page.html"
MANIFEST = HERE / "vendored.json"
# (npm package, version, the browser build inside its tarball), in the order the page loads them.
PACKAGES = [
    ("vega", "5.33.1", "build/vega.min.js"),
    ("vega-lite", "5.23.0", "build/vega-lite.min.js"),
    ("vega-embed", "6.29.0", "build/vega-embed.min.js"),
]
# vega's tarball has no LICENSE file; the packages of its monorepo carry the same BSD-3-Clause text,
# and vega.min.js bundles this one (the version vega 5.33.1 depends on; vega-util, say, ships none).
LICENCE_FROM = {"vega": ("vega-view", "5.16.1")}
# What DVC's renderer replaces in the template (dvc_render.html.HTML). {scripts} is left out on
# purpose: that is where DVC would put its CDN <script> tags.
PLACEHOLDERS = ("{refresh_tag}", "{plot_divs}")

# Kept on <html data-vega-embed="..."> as JSON, so that a headless browser (tools/plots_page/headless.py,
# tests/test_plots_page.py) reads a definite result: the library versions, what each plot's vegaEmbed
# call returned, whether each image loaded, the page's height. Plots are drawn as SVG (vega-embed's
# default is a canvas), so that what is drawn is in the DOM too.
RECORDER = """
(function () {
  var embed = window.vegaEmbed;
  var record = {versions: {vega: vega.version, "vega-lite": vegaLite.version, "vega-embed": embed.version},
                views: [], images: null};
  function publish() {
    record.height = document.documentElement.scrollHeight;
    document.documentElement.setAttribute("data-vega-embed", JSON.stringify(record));
  }
  window.vegaEmbed = function (el, spec, options) {
    var view = {id: String(el).replace(/^#/, ""), status: "pending"};
    record.views.push(view);
    var result = embed(el, spec, Object.assign({renderer: "svg"}, options));
    result.then(function () { view.status = "ok"; },
                function (error) { view.status = "error"; view.error = String(error); }).then(publish);
    publish();
    return result;
  };
  Object.assign(window.vegaEmbed, embed);
  window.addEventListener("load", function () {
    record.images = Array.prototype.map.call(document.images, function (image) {
      return {src: image.getAttribute("src"), width: image.naturalWidth};
    });
    publish();
  });
  publish();
})();
"""

SHELL = """<!DOCTYPE html>
<!--
{header}
-->
<html>
<head>
    <meta charset="utf-8">
    {{refresh_tag}}
    <title>DVC plots</title>
{scripts}
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def fetch(name: str, version: str, folder: Path) -> tuple[dict, bytes]:
    """The registry's record of name@version and its tarball, checked against that record."""
    dist = json.loads(subprocess.run(["npm", "view", "--json", f"{name}@{version}", "dist"], check=True,
                                     capture_output=True, text=True).stdout)
    packed = json.loads(subprocess.run(["npm", "pack", "--json", "--pack-destination", str(folder),
                                        f"{name}@{version}"], check=True, capture_output=True,
                                       text=True).stdout)[0]
    tarball = (folder / packed["filename"]).read_bytes()
    algorithm, expected = dist["integrity"].split("-", 1)
    actual = base64.b64encode(hashlib.new(algorithm, tarball).digest()).decode()
    if actual != expected:
        sys.exit(f"error: {name}@{version}: the tarball's {algorithm} is {actual}, the registry says {expected}")
    return dist, tarball


def member(tarball: bytes, path: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(tarball)) as archive:
        return archive.extractfile(f"package/{path}").read()


def inline_script(name: str, source: str) -> str:
    """A <script> element holding ``source``; an HTML parser ends a script at '</script', and the
    template engine replaces DVC's placeholders anywhere, so neither may occur in it."""
    if "</script" in source.lower():
        source = source.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT")
    assert "</script" not in source.lower(), name
    for placeholder in (*PLACEHOLDERS, "{scripts}"):
        if placeholder in source:
            sys.exit(f"error: {name} contains {placeholder}, which DVC would replace; pick another version")
    return f"    <script>/* {name} */\n{source}\n    </script>"


def main() -> None:
    libraries, scripts, licences = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, version, build in PACKAGES:
            dist, tarball = fetch(name, version, Path(tmp))
            package = json.loads(member(tarball, "package.json"))
            assert package["name"] == name and package["version"] == version, package["version"]
            source = member(tarball, build).decode("utf-8")
            libraries.append({"name": name, "version": version, "file": build, "license": package["license"],
                              "tarball": dist["tarball"], "integrity": dist["integrity"],
                              "file_sha256": hashlib.sha256(source.encode()).hexdigest(),
                              # the package's own dependencies: its build bundles what of them runs in a browser
                              "dependencies": sorted(package.get("dependencies", {}))})
            scripts.append(inline_script(f"{name} {version} {build} ({package['license']})", source))
            licence = f"{name} {version}: LICENSE"
            if name in LICENCE_FROM:
                source_name, source_version = LICENCE_FROM[name]
                _, source_tarball = fetch(source_name, source_version, Path(tmp))
                assert json.loads(member(source_tarball, "package.json"))["license"] == package["license"]
                licence = f"{name} {version}: the LICENSE of {source_name} {source_version}"
                libraries[-1]["license_file"] = f"LICENSE of {source_name} {source_version} (same licence)"
                tarball = source_tarball
            licences.append((licence, member(tarball, "LICENSE").decode("utf-8").strip()))
    scripts.append(inline_script("what each plot's vegaEmbed call did (tools/plots_page/build.py)", RECORDER))
    header = ["DVC plots page: the template `dvc plots show` / `dvc plots diff` fill (.dvc/config",
              "plots.html_template), with the Vega libraries inlined so that it renders offline.",
              "Generated by tools/plots_page/build.py; do not edit, re-run it.", "",
              "Inlined, from the npm registry (versions, tarballs and integrity also in vendored.json):"]
    header += [f"  {x['name']} {x['version']} ({x['license']}): {x['file']} of {x['tarball']} ({x['integrity']})"
               for x in libraries]
    for title, text in licences:
        header += ["", f"==== {title} ====", text.replace("-->", "- ->")]
    page = SHELL.format(header="\n".join(header), scripts="\n".join(scripts))
    for placeholder in PLACEHOLDERS:
        assert page.count(placeholder) == 1, placeholder
    PAGE.write_text(page, encoding="utf-8")
    MANIFEST.write_text(json.dumps({"generated_by": "tools/plots_page/build.py", "page": PAGE.name,
                                    "libraries": libraries}, indent=2) + "\n")
    print(f"wrote {PAGE.relative_to(HERE.parent.parent)} ({PAGE.stat().st_size / 1024:.0f} KiB) "
          f"and {MANIFEST.relative_to(HERE.parent.parent)}: " +
          ", ".join(f"{x['name']} {x['version']}" for x in libraries))


if __name__ == "__main__":
    main()

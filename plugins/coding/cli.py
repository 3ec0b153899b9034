"""``cpms coding``: import a terminology release, load the bundled ones, list what is loaded.

    cpms coding import FORMAT PATH [--replace] [--version V] [--key K]
    cpms coding load-bundled [NAMES...] [--replace] [--accept-who-licence]
    cpms coding list

A release that cannot be loaded (malformed file, system already loaded) exits with status 1
and says why on stderr; nothing is written then.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from plugins.coding.release import ReleaseError


@dataclass(frozen=True)
class Format:
    module: str
    key: str
    help: str
    folder: bool = False


FORMATS: dict[str, Format] = {
    "icd10-claml": Format("icd10_claml", "ICD-10", "WHO ICD-10 ClaML XML"),
    "icd10-cm": Format("icd10cm", "ICD-10-CM", "CDC ICD-10-CM tabular list XML"),
    "icd11-mms": Format("icd11_mms", "ICD-11", "WHO ICD-11 MMS simple tabulation (tab-separated)"),
    "orphanet": Format("orphanet", "ORPHA", "Orphanet nomenclature XML, or the unpacked pack folder / its zip"),
    "orphanet-mapping": Format("orphanet", "ORPHA", "an Orphanet alignment file (ORPHA_ICD10_mapping..., ORPHA_OMIM_mapping...)"),
    "hpo-obo": Format("hpo_obo", "HPO", "HPO hp.obo"),
    "hpo-json": Format("hpo_json", "HPO", "HPO hp.json (OBO Graphs)"),
    "hpo-annotations": Format("hpoa", "ORPHA", "phenotype.hpoa disease names (--key ORPHA or OMIM)"),
    "loinc": Format("loinc", "LOINC", "LOINC LoincTable/Loinc.csv"),
    "meddra": Format("meddra", "MedDRA", "MedDRA ASCII folder (MedAscii)", folder=True),
}


class _Bar:
    """A click progress bar fed with (done, total); a new total (the next system) starts a new bar."""

    def __init__(self, label: str):
        self.label, self.bar, self.done, self.total = label, None, 0, None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is not None and (total != self.total or done < self.done):
            self.close()
        if self.bar is None:
            self.bar = click.progressbar(length=max(total, 1), label=self.label, file=sys.stderr, show_pos=False)
            self.bar.__enter__()
            self.done, self.total = 0, total
        if done > self.done:
            self.bar.update(done - self.done)
            self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _summary(s: dict) -> str:
    replaced = f" (replaced version {s['replaced'] or 'unknown'})" if s.get("replaced") is not None else ""
    return (
        f"Loaded {s['key']} {s['version'] or '(no version)'}: {s['concepts']:,} concepts, {s['designations']:,} terms, "
        f"{s['parents']:,} hierarchy links, {s['mappings']:,} mappings in {s['seconds']:.1f} s{replaced}."
    )


def _run(work: Callable) -> object:
    """Run ``await work()`` against the configured database; a ReleaseError is a clean exit 1."""
    from core.cli import run_with_settings  # imported late: core.cli loads the plugins, this one among them

    async def main(settings):
        return await work()

    try:
        return run_with_settings(main)
    except ReleaseError as exc:
        raise click.ClickException(str(exc)) from None


def _user() -> str:
    try:
        return f"cli: {getpass.getuser()}"
    except Exception:  # no user name in some containers
        return "cli"


def register(cli: click.Group) -> None:
    @cli.group("coding", help="Terminologies: import releases, load the bundled ones, list what is loaded.")
    def coding():
        pass

    @coding.command(
        "import",
        help="Import a terminology release file (one transaction). FORMAT is one of: "
        + "; ".join(f"{name} ({f.help})" for name, f in FORMATS.items()) + ".",
    )
    @click.argument("fmt", metavar="FORMAT", type=click.Choice(list(FORMATS)))
    @click.argument("path", type=click.Path(exists=True, path_type=Path))
    @click.option("--replace", is_flag=True, help="Replace the version already loaded.")
    @click.option("--version", "version", default=None, help="The release's version, when the file does not say it.")
    @click.option("--key", default=None, help="System key (default: the format's, e.g. ICD-10; ORPHA or OMIM for hpo-annotations).")
    def import_release(fmt, path, replace, version, key):
        import importlib

        spec = FORMATS[fmt]
        module = importlib.import_module(f"plugins.coding.importers.{spec.module}")
        key = key or spec.key
        reading = _Bar(f"Reading {path.name}")

        if fmt == "orphanet-mapping":
            from plugins.coding.importers._common import file_label
            from plugins.coding.release import replace_mappings

            try:
                by_target, file_version, notes = module.read_mappings(path, progress=reading)
            except ReleaseError as exc:
                raise click.ClickException(str(exc)) from None
            finally:
                reading.close()

            async def write_all():
                return {t: await replace_mappings(key, m, target_system=t, source=file_label(path)) for t, m in by_target.items()}

            for target, s in _run(write_all).items():
                skipped = f"; {s['skipped']:,} from codes {key} does not have, not kept" if s["skipped"] else ""
                click.echo(f"{key} → {target}: {s['written']:,} mappings written ({s['removed']:,} replaced){skipped}. Alignment {file_version}.")
            for note in notes:
                click.echo(f"  {note}")
            return

        kwargs = {"version": version, "progress": reading, "key": key}
        try:
            release = module.read(path, **kwargs)
        except ReleaseError as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            reading.close()
        writing = _Bar(f"Writing {release.key}")

        async def write():
            from plugins.coding.release import write_release

            try:
                return await write_release(release, replace=replace, imported_by=_user(), progress=writing)
            finally:
                writing.close()

        summary = _run(write)
        click.echo(_summary(summary))
        for note in summary.get("notes", []):
            click.echo(f"  {note}")

    @coding.command("load-bundled", help=(
        "Load terminologies shipped with the installed packages. Without NAMES: hpo, orpha-hpoa and icd10-cm, "
        "those not loaded yet. Also: omim-hpoa (OMIM names; OMIM's terms apply) and icd10-who "
        "(WHO ICD-10 2019; needs --accept-who-licence)."
    ))
    @click.argument("names", nargs=-1)
    @click.option("--replace", is_flag=True, help="Replace versions already loaded.")
    @click.option("--accept-who-licence", is_flag=True, help="Confirm your organisation may use WHO ICD-10 under WHO's terms.")
    def load_bundled_cmd(names, replace, accept_who_licence):
        from plugins.coding import bundled

        if accept_who_licence:
            click.echo(f"Note: {bundled.WHO_TERMS.rsplit(' Pass ', 1)[0]}")

        async def work():
            if not names:
                bar = _Bar("Writing")
                try:
                    return await bundled.load_default_bundled(only_missing=not replace, progress=bar)
                finally:
                    bar.close()
            out = {"loaded": [], "skipped": []}
            for name in names:
                bar = _Bar(f"Writing {name}")
                try:
                    out["loaded"].append(
                        await bundled.load_bundled(name, replace=replace, accept_licence=accept_who_licence, progress=bar, imported_by=_user())
                    )
                finally:
                    bar.close()
            return out

        result = _run(work)
        for s in result["loaded"]:
            click.echo(_summary(s))
        for s in result["skipped"]:
            click.echo(f"{s['key']} already loaded ({s['version']}, from {s['source']}): left as it is; --replace reloads it.")

    @coding.command("list", help="List the loaded terminologies: key, version, concepts, source.")
    def list_systems():
        from plugins.coding.release import loaded

        rows = _run(loaded)
        if not rows:
            click.echo("No terminology loaded. `cpms coding load-bundled` loads HPO, ORPHA and ICD-10-CM.")
            return
        width = max(len(r["key"]) for r in rows)
        for r in rows:
            when = r["imported_at"].strftime("%Y-%m-%d %H:%M") if hasattr(r["imported_at"], "strftime") else str(r["imported_at"])
            click.echo(f"{r['key']:<{width}}  {r['version'] or '-':<20}  {r['concepts']:>8,} concepts  {when}  {r['source']}")

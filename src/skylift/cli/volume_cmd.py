"""`skylift volume create | list | ls | put | get | rm | cp | rename | delete`."""

from __future__ import annotations

import json
import posixpath
import sys
from pathlib import Path

import click

from .. import config
from .._client import Client, run_sync
from .._object import list_objects
from ..volume import FileEntryType, Volume
from ._common import env_option, table, when


def _handle(name: str) -> Volume:
    return Volume.from_name(name, environment_name=config.environment_name())


@click.group("volume")
def volume_group() -> None:
    """Manage Volumes (persistent directories shared by containers)."""


@volume_group.command("create")
@click.argument("name")
@click.option("--version", type=click.IntRange(1, 2), default=None, help="Modal's volume version (accepted; "
              "skylift has one implementation).")
@env_option
def create_cmd(name: str, version: int | None) -> None:
    """Create a named Volume."""
    Volume.objects.create(name, environment_name=config.environment_name())
    click.echo(f"Created Volume {name!r}. Mount it with: @app.function(volumes={{'/data': "
               f"modal.Volume.from_name({name!r})}})")


@volume_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@env_option
def list_cmd(as_json: bool) -> None:
    """List Volumes with their number of files."""
    objects = run_sync(list_objects("volume", config.environment_name()))
    if as_json:
        click.echo(json.dumps(objects, indent=2))
        return
    click.echo(table([[o["name"], o["object_id"], str(o["size"]), when(o["created_at"])] for o in objects],
                     ["Name", "ID", "Files", "Created at"]))


@volume_group.command("ls")
@click.argument("name")
@click.argument("path", default="/")
@click.option("-r", "--recursive", is_flag=True, help="List everything below PATH.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@env_option
def ls_cmd(name: str, path: str, recursive: bool, as_json: bool) -> None:
    """List the files and directories under PATH."""
    entries = _handle(name).listdir(path, recursive=recursive)
    if as_json:
        click.echo(json.dumps([{"path": e.path, "type": e.type.name.lower(), "size": e.size, "mtime": e.mtime}
                               for e in entries], indent=2))
        return
    rows = [[e.path + ("/" if e.type == FileEntryType.DIRECTORY else ""),
             "dir" if e.type == FileEntryType.DIRECTORY else "file", str(e.size), when(e.mtime)] for e in entries]
    click.echo(table(rows, ["Path", "Type", "Size", "Modified"]))


@volume_group.command("put")
@click.argument("name")
@click.argument("local_path", type=click.Path(exists=True))
@click.argument("remote_path", default="/")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing files.")
@env_option
def put_cmd(name: str, local_path: str, remote_path: str, force: bool) -> None:
    """Upload a file or directory (into REMOTE_PATH/ when it ends with '/')."""
    local = Path(local_path)
    remote = remote_path + local.name if remote_path.endswith("/") else remote_path
    with _handle(name).batch_upload(force=force) as batch:
        if local.is_dir():
            batch.put_directory(local, remote)
        else:
            batch.put_file(local, remote)
    click.echo(f"Uploaded {local} to {name}:{remote}")


@volume_group.command("get")
@click.argument("name")
@click.argument("remote_path")
@click.argument("local_path", default=".")
@click.option("--force", is_flag=True, help="Overwrite existing local files.")
@env_option
def get_cmd(name: str, remote_path: str, local_path: str, force: bool) -> None:
    """Download a file or directory ('-' as LOCAL_PATH writes a file to stdout)."""
    volume = _handle(name)
    entries = volume.listdir(remote_path, recursive=True)
    root = remote_path.strip("/")
    single = len(entries) == 1 and entries[0].path == root and entries[0].type == FileEntryType.FILE
    if local_path == "-":
        if not single:
            raise click.ClickException(f"{remote_path} is a directory; give a local directory instead of '-'")
        for chunk in volume.read_file(remote_path):
            sys.stdout.buffer.write(chunk)
        return
    dest = Path(local_path)
    if single:
        target = dest / posixpath.basename(root) if dest.is_dir() else dest
        files = [(entries[0].path, target)]
    else:
        base = dest / posixpath.basename(root) if root else dest
        files = [(e.path, base / e.path[len(root):].lstrip("/")) for e in entries if e.type == FileEntryType.FILE]
        for e in entries:
            if e.type == FileEntryType.DIRECTORY:
                (base / e.path[len(root):].lstrip("/")).mkdir(parents=True, exist_ok=True)
    for remote, target in files:
        if target.exists() and not force:
            raise click.ClickException(f"{target} exists; use --force to overwrite it")
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as f:
            volume.read_file_into_fileobj(remote, f)
    click.echo(f"Downloaded {len(files)} file(s) to {dest}")


@volume_group.command("rm")
@click.argument("name")
@click.argument("path")
@click.option("-r", "--recursive", is_flag=True, help="Remove a directory and everything in it.")
@env_option
def rm_cmd(name: str, path: str, recursive: bool) -> None:
    """Remove a file or directory."""
    _handle(name).remove_file(path, recursive=recursive)
    click.echo(f"Removed {name}:{path}")


@volume_group.command("cp")
@click.argument("name")
@click.argument("paths", nargs=-1, required=True)
@click.option("-r", "--recursive", is_flag=True, help="Copy directories.")
@env_option
def cp_cmd(name: str, paths: tuple[str, ...], recursive: bool) -> None:
    """Copy files within a volume: `cp NAME SRC... DST`."""
    if len(paths) < 2:
        raise click.UsageError("give at least one source and a destination")
    _handle(name).copy_files(list(paths[:-1]), paths[-1], recursive=recursive)
    click.echo(f"Copied {', '.join(paths[:-1])} to {paths[-1]}")


@volume_group.command("rename")
@click.argument("old_name")
@click.argument("new_name")
@click.option("-y", "--yes", is_flag=True, help="Run without pausing for confirmation.")
@env_option
def rename_cmd(old_name: str, new_name: str, yes: bool) -> None:
    """Rename a Volume (same files and id). Apps that mount it by the old name break until redeployed."""
    if not yes:
        click.confirm(f"Rename Volume {old_name!r} to {new_name!r}? Apps using the old name will break.", abort=True)
    Volume.rename(old_name, new_name, environment_name=config.environment_name())
    click.echo(f"Renamed Volume {old_name!r} to {new_name!r}")


@volume_group.command("delete")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Don't ask for confirmation.")
@click.option("--allow-missing", is_flag=True, help="Succeed if there is no such Volume.")
@env_option
def delete_cmd(name: str, yes: bool, allow_missing: bool) -> None:
    """Delete a Volume and its files. Apps that mount it break until redeployed."""
    if not yes:
        click.confirm(f"Delete Volume {name!r} and all its files?", abort=True)
    run_sync(Client.from_env().call("object.delete", {"kind": "volume", "name": name, "allow_missing": allow_missing,
                                                      "environment": config.environment_name()}))
    click.echo(f"Deleted Volume {name!r}")

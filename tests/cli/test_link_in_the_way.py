"""An output that is itself a symbolic link out of the project: the plan says what
--force does to it (the link is replaced, what it points to is not touched), not that
a copy goes to .nebula-build/backup/, which no run makes of a link."""

from __future__ import annotations

import json

from tests.manifests import PREVIEW

MANIFEST = PREVIEW + '\n[images.a]\nprompt = "a lighthouse"\noutput = "a.png"\n'

REPLACED = (
    "A symbolic link out of the project is in the way: `nebula-build apply --force` "
    "replaces the link (what it points to outside the project is not touched); to keep "
    "it, give the image another output."
)


def test_a_link_out_in_the_way_is_said_replaced_not_backed_up(project, run_cli, tmp_path):
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"someone else's file")
    root = project({"images.toml": MANIFEST})
    (root / "a.png").symlink_to(outside)

    code, out, _ = run_cli("plan")
    assert code == 0
    assert "a symbolic link out of the project is in the way" in out
    assert REPLACED in out
    assert "backup" not in out

    code, out, _ = run_cli("plan", "--json")
    assert json.loads(out)["actions"][0]["with_force"]["backup"] is False

    code, _, err = run_cli("apply")
    assert code == 1
    assert (
        "a.png: a symbolic link out of the project is in the way; not overwritten: re-run "
        "with --force to replace the link (what it points to outside the project is not "
        "touched)"
    ) in err, err
    assert "backup" not in err

    code, out, _ = run_cli("plan", "--force")
    assert code == 0
    assert (
        "new image (the symbolic link a.png is replaced; what it points to outside the "
        "project is not touched)"
    ) in out
    assert "backup" not in out

    code, out, err = run_cli("apply", "--force", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["results"][0]["backup"] is False and result["backups"] == []
    assert not (root / "a.png").is_symlink() and (root / "a.png").stat().st_size > 0
    assert outside.read_bytes() == b"someone else's file"
    assert not (root / ".nebula-build" / "backup").exists()


def test_a_file_changed_by_hand_beside_a_link_is_still_backed_up(project, run_cli, tmp_path):
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"someone else's file")
    manifest = MANIFEST + '\n[images.b]\nprompt = "a fox"\noutput = "b.png"\n'
    root = project({"images.toml": manifest, "b.png": b"drawn by hand"})
    (root / "a.png").symlink_to(outside)

    code, out, _ = run_cli("plan")
    assert code == 0
    assert REPLACED in out
    assert "A file in the way is kept" in out and ".nebula-build/backup/" in out
    code, _, err = run_cli("apply", "--force")
    assert code == 0, err
    backups = list((root / ".nebula-build" / "backup").rglob("*.png"))
    assert [path.name for path in backups] == ["b.png"]
    assert outside.read_bytes() == b"someone else's file"


def test_plan_detailed_exitcode_does_not_promise_a_backup_for_a_link(project, run_cli, tmp_path):
    """Its closing error had said every conflict was a file changed by hand that
    --force backs up."""
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"someone else's file")
    root = project({"images.toml": MANIFEST})
    (root / "a.png").symlink_to(outside)
    code, _, err = run_cli("plan", "--detailed-exitcode")
    assert code == 1
    assert err == (
        "error: 1 output in conflict (a.png), which apply would refuse to overwrite: the "
        "plan says why, and what `nebula-build apply --force` would do\n"
    )

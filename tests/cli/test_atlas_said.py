"""What plan, status and apply say of an atlas: many members' names, said a few at
a time."""

from __future__ import annotations

SPRITES = """\
version = 1

[defaults]
backend = "preview"
model = "stabilityai/stable-diffusion-xl-base-1.0"
width = 64
height = 64

[images.hero]
prompt = "a hero knight"
output = "sprites/hero.png"

[images.hero-cap]
prompt = "a hero knight in a red cap"
output = "sprites/hero-cap.png"

[images.enemy]
prompt = "a {kind} monster"
matrix = { kind = ["slime", "bat", "ghost", "imp", "orc", "rat"] }
output = "sprites/{kind}.png"

[atlases.enemies]
images = ["enemy[*]"]
output = "sprites/enemies.png"
aseprite = "sprites/enemies.aseprite.json"
godot = "sprites/enemies.tres"

[atlases.heroes]
images = ["hero", "hero-cap"]
output = "sprites/heroes.png"
"""


def test_many_members_are_said_a_few_by_name_wherever_an_atlas_lists_them(project, run_cli):
    """Before, `members change:` named every member (41 of them) before "… and 38 more
    left"."""
    root = project({"images.toml": SPRITES})
    assert run_cli("apply").code == 0
    (root / "images.toml").write_text(
        SPRITES.replace("images.enemy]", "images.foe]").replace('"enemy[*]"', '"foe[*]"')
    )
    code, out, err = run_cli("plan")
    assert code == 0, err
    reason = (
        "      members change: foe[slime], foe[bat], foe[ghost] and 3 more; "
        "enemy[bat], enemy[ghost], enemy[imp] and 3 more left; "
        "foe[slime], foe[bat], foe[ghost] and 3 more joined\n"
    )
    assert reason in out, out

"""Every kind of bad input: one clear message naming the file/field, exit 2, nothing written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from simrec.cli import main

from .conftest import write_ml100k, write_mllatest, write_recbole, write_table_csv


def _ml_latest(world, tmp: Path) -> Path:
    return write_mllatest(world, tmp / "mll")


def _edit(path: Path, old: str, new: str, count: int = 1) -> None:
    path.write_text(path.read_text(encoding="utf-8").replace(old, new, count), encoding="utf-8")


def case_missing_dir(w, tmp):
    return ["--data", str(tmp / "nope"), "--format", "movielens-latest"], ["nope", "not found"]


def case_missing_ratings_file(w, tmp):
    d = _ml_latest(w, tmp)
    (d / "ratings.csv").unlink()
    return ["--data", str(d), "--format", "movielens-latest"], ["ratings.csv", "not found"]


def case_unknown_format(w, tmp):
    return ["--data", str(_ml_latest(w, tmp)), "--format", "movielens-2m"], [
        "invalid choice",
        "movielens-2m",
    ]


def case_unknown_format_in_config(w, tmp):
    cfg = tmp / "c.yaml"
    cfg.write_text("data:\n  format: netflix\n")
    return [str(cfg)], ["c.yaml", "data.format", "netflix"]


def case_missing_column(w, tmp):
    d = _ml_latest(w, tmp)
    _edit(d / "ratings.csv", "userId,movieId,rating,timestamp", "userId,movieId,score,timestamp")
    return ["--data", str(d)], ["ratings.csv", "'rating'", "missing column"]


def case_mistyped_column(w, tmp):
    d = _ml_latest(w, tmp)
    lines = (d / "ratings.csv").read_text().splitlines()
    parts = lines[3].split(",")
    parts[2] = "four"
    lines[3] = ",".join(parts)
    (d / "ratings.csv").write_text("\n".join(lines) + "\n")
    return ["--data", str(d)], [
        "ratings.csv",
        "column 'rating'",
        "expected numbers",
        "'four'",
        "line 4",
    ]


def case_empty_file(w, tmp):
    d = _ml_latest(w, tmp)
    (d / "ratings.csv").write_text("")
    return ["--data", str(d)], ["ratings.csv", "empty"]


def case_header_only(w, tmp):
    d = _ml_latest(w, tmp)
    (d / "ratings.csv").write_text("userId,movieId,rating,timestamp\n")
    return ["--data", str(d)], ["ratings.csv", "no rows"]


def case_duplicate_item_ids(w, tmp):
    d = _ml_latest(w, tmp)
    lines = (d / "movies.csv").read_text().splitlines()
    lines.append(lines[1])
    (d / "movies.csv").write_text("\n".join(lines) + "\n")
    return ["--data", str(d)], ["movies.csv", "duplicate item id", "1"]


def case_unknown_item_in_ratings(w, tmp):
    d = _ml_latest(w, tmp)
    with open(d / "ratings.csv", "a") as f:
        f.write("1,999999,4.0,1700000000\n")
    return ["--data", str(d)], ["ratings.csv", "999999", "not in", "movies.csv"]


def case_non_utf8(w, tmp):
    d = _ml_latest(w, tmp)
    data = (d / "movies.csv").read_bytes().replace("Thé".encode(), "Thé".encode("latin-1"), 1)
    (d / "movies.csv").write_bytes(data)
    return ["--data", str(d)], ["movies.csv", "expected UTF-8", "0xe9", "line"]


def case_bad_ml100k_item_line(w, tmp):
    d = write_ml100k(w, tmp / "ml100k")
    with open(d / "u.item", "a", encoding="latin-1") as f:
        f.write("9999|Broken|x\n")
    return ["--data", str(d)], ["u.item", "line", "expected 24", "found 3"]


def case_table_without_mapping(w, tmp):
    p = write_table_csv(w, tmp / "log.csv")
    return ["--data", str(p), "--columns", "user=uid"], ["--columns", "'item'"]


def case_table_mapping_to_absent_column(w, tmp):
    p = write_table_csv(w, tmp / "log.csv")
    return ["--data", str(p), "--columns", "user=uid,item=iid,rating=rating"], [
        "log.csv",
        "'rating'",
        "missing column",
    ]


def case_table_unsupported_suffix(w, tmp):
    p = tmp / "log.xlsx"
    p.write_text("x")
    return ["--data", str(p), "--columns", "user=a,item=b"], ["log.xlsx", "expected a .csv"]


def case_bad_config_value(w, tmp):
    cfg = tmp / "c.yaml"
    cfg.write_text("simulation:\n  page_size: -3\n")
    return [str(cfg)], ["c.yaml", "simulation.page_size", "-3"]


def case_bad_taste_dim(w, tmp):
    cfg = tmp / "c.yaml"
    cfg.write_text("brain:\n  taste_dim: many\n")
    return [str(cfg)], ["c.yaml", "brain.taste_dim", "2 to 256, or auto", "'many'"]


def case_unknown_config_field(w, tmp):
    cfg = tmp / "c.toml"
    cfg.write_text("[simulation]\npages = 3\n")
    return [str(cfg)], ["c.toml", "simulation.pages", "unknown field"]


def case_bad_flag_value(w, tmp):
    return ["--ticks", "0"], ["simulation.ticks", "greater than 0", "0"]


def case_unknown_policy(w, tmp):
    return ["--policy", "magic"], ["unknown policy 'magic'", "popular", "random"]


def case_policy_class_not_found(w, tmp):
    return ["--policy", "simrec.cli:NoSuchPolicy"], ["simrec.cli", "NoSuchPolicy"]


def case_missing_config_file(w, tmp):
    return [str(tmp / "absent.yaml")], ["absent.yaml", "not found"]


def _recbole(w, tmp: Path) -> Path:
    return write_recbole(w, tmp / "rb")


def case_recbole_header_without_types(w, tmp):
    d = _recbole(w, tmp)
    _edit(d / "tiny.inter", "rating:float", "rating")
    return ["--data", str(d)], ["tiny.inter", "line 1", "'rating'", "name:type"]


def case_recbole_unknown_field_type(w, tmp):
    d = _recbole(w, tmp)
    _edit(d / "tiny.inter", "rating:float", "rating:double")
    return ["--data", str(d)], ["tiny.inter", "line 1", "field 'rating'", "'double'", "float_seq"]


def case_recbole_wrong_field_count(w, tmp):
    d = _recbole(w, tmp)
    lines = (d / "tiny.inter").read_text().splitlines()
    lines[5] += "\textra"
    (d / "tiny.inter").write_text("\n".join(lines) + "\n")
    return ["--data", str(d)], ["tiny.inter", "line 6", "expected 4 tab-separated", "found 5"]


def _set_field(path: Path, line: int, field: int, value: str) -> None:
    """Replace field ``field`` (0-based) of line ``line`` (0-based, header 0) of a TSV file."""
    lines = path.read_text().splitlines()
    parts = lines[line].split("\t")
    parts[field] = value
    lines[line] = "\t".join(parts)
    path.write_text("\n".join(lines) + "\n")


def case_recbole_item_unknown_to_item_file(w, tmp):
    d = _recbole(w, tmp)
    _set_field(d / "tiny.inter", 3, 1, "987654")
    return ["--data", str(d)], ["tiny.inter", "line 4", "field 'item_id'", "'987654'", "tiny.item"]


def case_recbole_link_to_no_item(w, tmp):
    d = _recbole(w, tmp)
    with open(d / "tiny.link", "a") as f:
        f.write("55555\tm.zzz\n")
    return ["--data", str(d)], ["tiny.link", "line 12", "'55555'", "not in the catalog"]


def case_recbole_bad_rating(w, tmp):
    d = _recbole(w, tmp)
    _set_field(d / "tiny.inter", 2, 2, "great")
    return ["--data", str(d)], ["tiny.inter", "line 3", "field 'rating'", "'great'"]


def _config(tmp: Path, text: str, suffix: str = ".yaml") -> str:
    path = tmp / f"config{suffix}"
    path.write_text(text)
    return str(path)


def case_run_name_is_a_path(w, tmp):
    return [_config(tmp, "name: ../escaped-run\n")], ["name", "'../escaped-run'", "folder"]


def case_yaml_alias_bomb(w, tmp):
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [
        f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in zip("abcdefg", "bcdefgh", strict=True)
    ]
    return [_config(tmp, "\n".join(lines))], ["config.yaml", "aliases (*a) are not supported"]


def case_deeply_nested_toml(w, tmp):
    path = _config(tmp, "a = " + "[" * 5000 + "]" * 5000, ".toml")
    return [path], ["config.toml", "nested too deeply"]


def case_population_beyond_memory(w, tmp):
    return ["--users", "100000000"], ["GiB of memory", "available"]


def case_policy_beyond_memory(w, tmp):
    return ["--policy", "als", "--param", "factors=100000000"], ["GiB of memory", "policy"]


def case_api_key_env_not_a_variable_name(w, tmp):
    return [_config(tmp, "llm: {api_key_env: 'sk-abc; rm -rf'}\n")], ["llm.api_key_env"]


def case_max_fallback_share_out_of_range(w, tmp):
    return [_config(tmp, "llm: {max_fallback_share: 1.5}\n")], ["llm.max_fallback_share"]


CASES = [v for k, v in sorted(globals().items()) if k.startswith("case_")]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__[5:] for c in CASES])
def test_bad_input_exits_2_with_one_clear_message(case, tiny_world, tmp_path, capsys):
    args, expected = case(tiny_world, tmp_path)
    out = tmp_path / "out"
    argv = ["run", *args, "--out", str(out), "--quiet"]
    if "--ticks" not in args:
        argv += ["--ticks", "2"]
    try:
        rc = main(argv)
    except SystemExit as stop:  # argparse's own usage errors
        rc = stop.code
    assert rc == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for fragment in expected:
        assert fragment in err, f"expected {fragment!r} in {err!r}"
    assert not out.exists(), "bad input must write nothing"


def test_existing_complete_run_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            ["run", "--users", "50", "--items", "40", "--ticks", "1", "--out", str(out), "--quiet"]
        )
        == 0
    )
    before = sorted(p.name for p in out.rglob("*"))
    stamp = (out / "manifest.json").stat().st_mtime_ns
    assert (
        main(
            ["run", "--users", "50", "--items", "40", "--ticks", "1", "--out", str(out), "--quiet"]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert f"{out}: already holds a complete run; pass --overwrite" in err
    assert sorted(p.name for p in out.rglob("*")) == before
    assert (out / "manifest.json").stat().st_mtime_ns == stamp
    assert (
        main(
            [
                "run",
                "--users",
                "50",
                "--items",
                "40",
                "--ticks",
                "1",
                "--out",
                str(out),
                "--quiet",
                "--overwrite",
            ]
        )
        == 0
    )


def test_non_run_directory_is_refused(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert main(["run", "--ticks", "1", "--out", str(out), "--quiet"]) == 2
    assert "was not written by simrec" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["precious.txt"]
    shutil.rmtree(out)

import numpy as np
import pytest

from simrec.config import SyntheticWorldConfig
from simrec.data import RatingScale, load
from simrec.data.synthetic import _best_keys, _descending_within_rows, make_world
from simrec.errors import InputError


@pytest.mark.parametrize(
    "fmt,fixture",
    [("movielens-100k", "ml100k"), ("movielens-1m", "ml1m"), ("movielens-latest", "mllatest")],
)
def test_movielens_loaders_read_what_was_written(fmt, fixture, request, tiny_world):
    data = load(fmt, request.getfixturevalue(fixture))
    assert len(data.interactions) == len(tiny_world.interactions)
    n = tiny_world.catalog.n_items
    assert data.catalog.n_items == n + (fmt == "movielens-latest")  # + one never-rated movie
    assert data.interactions.n_users == tiny_world.interactions.n_users
    assert data.source == fmt
    # titles survive the format's encoding (Latin-1 for 100k/1m, UTF-8 for latest)
    assert any("Thé " in t for t in data.catalog.titles)
    # genres are kept per item
    want = [sorted(g) for g in tiny_world.catalog.genre_lists()]
    got = [sorted(x.replace("'s", "") for x in g) for g in data.catalog.genre_lists()[:n]]
    assert got == want
    assert data.file_hashes and all(len(h) == 64 for h in data.file_hashes.values())


def test_ml_latest_half_star_scale_and_csv_quirks(mllatest):
    data = load("movielens-latest", mllatest)
    assert data.scale == RatingScale(0.5, 5.0, 0.5)
    assert data.catalog.titles[0] == '"Great Performances" Cats (1998)'
    assert data.catalog.titles[1] == "Heat (1995)"
    never = list(data.catalog.item_ids).index(999001)  # in the catalog, never rated
    assert data.catalog.popularity[never] == 0 and data.catalog.genre_lists()[never] == []


def test_table_with_column_mapping_and_string_ids(table_csv, tiny_world):
    data = load(
        "table",
        table_csv,
        columns={"user": "uid", "item": "iid", "rating": "stars", "timestamp": "when"},
    )
    assert len(data.interactions) == len(tiny_world.interactions)
    assert data.catalog.item_ids.dtype == object and str(data.catalog.item_ids[0]).startswith("m")
    assert data.scale == RatingScale(1.0, 5.0, 1.0)


def test_table_parquet_and_jsonl_and_iso_timestamps(tmp_path):
    import pandas as pd

    df = pd.DataFrame(
        {
            "u": [1, 1, 2, 3],
            "i": ["a", "b", "a", "c"],
            "r": [4.0, 3.0, 5.0, 1.0],
            "t": [
                "2024-01-01T00:00:00Z",
                "2024-01-02T00:00:00Z",
                "2024-01-03T10:00:00Z",
                "2024-02-01T00:00:00Z",
            ],
        }
    )
    cols = {"user": "u", "item": "i", "rating": "r", "timestamp": "t"}
    df.to_parquet(tmp_path / "x.parquet")
    df.to_json(tmp_path / "x.jsonl", orient="records", lines=True)
    for name in ("x.parquet", "x.jsonl"):
        data = load("table", tmp_path / name, columns=cols)
        assert data.interactions.timestamp[0] == 1704067200
        assert data.catalog.n_items == 3 and data.interactions.n_users == 3


def test_delimited_tables_with_a_header_tell_their_separator(tmp_path):
    """A tab-separated .dat (a music log: user, artist, plays) with an items file whose id
    column is named otherwise, and the same log as ;-separated .txt and ::-separated .dat."""
    rows = [(2, 10, 5), (2, 11, 1), (3, 10, 7), (4, 12, 2)]
    (tmp_path / "user_artists.dat").write_text(
        "userID\tartistID\tweight\n" + "".join(f"{u}\t{a}\t{w}\n" for u, a, w in rows)
    )
    (tmp_path / "artists.dat").write_text(
        "id\tname\turl\n10\tMadonna\thttp://a\n11\tABBA\thttp://b\n12\tBjork, Iceland\tx\n"
    )
    cols = {"user": "userID", "item": "artistID", "items_item": "id", "title": "name"}
    data = load(
        "table", tmp_path / "user_artists.dat", columns=cols, items_path=tmp_path / "artists.dat"
    )
    assert data.catalog.titles.tolist() == ["Madonna", "ABBA", "Bjork, Iceland"]
    assert len(data.interactions) == 4 and data.interactions.n_users == 3
    for name, sep in (("log.txt", ";"), ("log2.dat", "::")):
        (tmp_path / name).write_text(
            sep.join(["u", "a"]) + "\n" + "".join(f"{u}{sep}{a}\n" for u, a, _ in rows)
        )
        again = load("table", tmp_path / name, columns={"user": "u", "item": "a"})
        assert again.interactions.item.tolist() == [0, 1, 0, 2]
    with pytest.raises(InputError, match="artists.dat.*'artistID'"):  # unmapped: named as missing
        load(
            "table",
            tmp_path / "user_artists.dat",
            columns={"user": "userID", "item": "artistID"},
            items_path=tmp_path / "artists.dat",
        )


def test_rating_scale_quantise_and_infer():
    s = RatingScale.infer(np.array([1, 2, 3, 4, 5.0]))
    assert s == RatingScale(1.0, 5.0, 1.0)
    assert s.quantise(np.array([-3.0, 2.49, 7.0])).tolist() == [1.0, 2.0, 5.0]


def test_synthetic_world_is_deterministic_and_power_law():
    cfg = SyntheticWorldConfig(users=200, items=150)
    a, b = make_world(cfg, 5), make_world(cfg, 5)
    assert np.array_equal(a.interactions.item, b.interactions.item)
    assert np.array_equal(a.interactions.rating, b.interactions.rating)
    c = make_world(cfg, 6)
    assert not np.array_equal(a.interactions.item, c.interactions.item)
    pop = np.sort(a.catalog.popularity)[::-1]
    assert pop[:15].sum() > 3 * pop[-15:].sum()  # a head and a long tail
    assert set(np.unique(a.interactions.rating)) <= {1.0, 2.0, 3.0, 4.0, 5.0}


def _best_keys_by_sorting(keys, n):
    """The reference: each row sorted whole (value descending, then column)."""
    rows, cols = [], []
    for row, k in enumerate(n):
        best = np.lexsort((np.arange(keys.shape[1]), -keys[row]))[:k]
        rows.append(np.full(k, row))
        cols.append(best)
    return np.concatenate(rows), np.concatenate(cols)


@pytest.mark.parametrize("shape", [(64, 300), (40, 1000), (7, 256), (5, 3)])
def test_world_sampling_picks_each_rows_best_keys_as_a_full_sort_would(shape):
    g = np.random.default_rng(shape[1])
    r, m = shape
    # few distinct values: many ties, at the boundary and inside the picks; -0.0 and +inf
    keys = np.round(g.normal(size=shape), 1).astype(np.float32)
    keys[0, :2] = [-0.0, 0.0]
    keys[1, :3] = np.inf
    n = g.integers(1, m + 1, r)  # rows with n over the 256 blocks take the exact path
    n[:2] = min(m, 3)
    got = _best_keys(keys, n)
    want = _best_keys_by_sorting(keys, n)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def test_descending_within_rows_is_numpys_lexsort_by_row_then_value():
    g = np.random.default_rng(0)
    rows, cols = np.divmod(np.sort(g.choice(50 * 3000, 5000, replace=False)), 3000)  # pairs
    values = np.round(g.normal(size=5000), 1).astype(np.float32)  # many ties
    values[:3] = [-0.0, 0.0, -np.inf]
    got = _descending_within_rows(rows, cols, values)
    assert np.array_equal(got, np.lexsort((cols, -values, rows)))


@pytest.mark.parametrize("prefix", [0, (1 << 20) - 1])  # the bad byte inside or after a split char
def test_utf8_check_reports_the_byte_offset_and_line(tmp_path, prefix):
    from simrec.data.files import check_utf8
    from simrec.errors import InputError

    p = tmp_path / "x.csv"
    head = b"a" * prefix + "é".encode() + b"\nb\n"  # é straddles the 1 MiB block edge
    p.write_bytes(head + b"\xff\n")
    with pytest.raises(InputError, match=rf"found byte 0xff at offset {len(head)} \(line 3\)"):
        check_utf8(p)


def test_a_count_column_is_the_strength_of_each_interaction(tmp_path, caplog):
    log = tmp_path / "plays.csv"
    log.write_text("user,artist,plays\n1,a,300\n1,b,2\n2,a,1\n2,c,40\n3,b,7\n")
    data = load("table", log, columns={"user": "user", "item": "artist", "count": "plays"})
    assert data.interactions.count.tolist() == [300, 2, 1, 40, 7]
    assert np.isnan(data.interactions.rating).all()  # counts are not ratings
    assert "count" in data.interactions.to_arrow().column_names
    conf = data.interactions.confidence(data.catalog.n_items).toarray()
    assert conf[0, 0] == np.float32(1 + np.log(300)) and conf[1, 0] == 1.0
    # mapped as a rating instead, the counts are read, with a warning that names the range
    with caplog.at_level("WARNING"):
        load("table", log, columns={"user": "user", "item": "artist", "rating": "plays"})
    assert "ratings run from 1 to 300 in steps of 1" in caplog.text and "count=COL" in caplog.text
    log.write_text("user,artist,plays\n1,a,3\n2,b,-1\n")
    with pytest.raises(
        InputError, match=r"plays.csv: column 'plays': expected counts >= 0.*line 3"
    ):
        load("table", log, columns={"user": "user", "item": "artist", "count": "plays"})

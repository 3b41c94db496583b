"""The synthetic export: e621's exact CSV formats, every feature the builder meets, seeds."""

import csv
import gzip
import hashlib
import io
import json

import pytest
from PIL import Image

from furrytag_cli.core.errors import ConfigError, DatasetError
from furrytag_cli.dataset.synth import write_synthetic
from furrytag_cli.model.categories import CategorySet

# Verbatim from e621's db_export.
HEADERS = {
    "posts": "id,uploader_id,created_at,md5,source,rating,image_width,image_height,tag_string,"
    "locked_tags,fav_count,file_ext,parent_id,change_seq,approver_id,file_size,"
    "comment_count,description,duration,updated_at,is_deleted,is_pending,is_flagged,"
    "score,up_score,down_score,is_rating_locked,is_status_locked,is_note_locked",
    "tags": "id,name,category,post_count",
    "tag_aliases": "id,antecedent_name,consequent_name,created_at,status",
    "tag_implications": "id,antecedent_name,consequent_name,created_at,status",
}
BACKGROUNDS = {
    "safe": (168, 200, 232),
    "questionable": (232, 212, 140),
    "explicit": (226, 136, 136),
}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "s"
    report = write_synthetic(out, 120, seed=5, tags_per_head=3)
    return out, report


def read_csv(path):
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def rows(out, kind):
    (path,) = (out / "export").glob(f"{kind}-*.csv*")
    header, *body = read_csv(path)
    return [dict(zip(header, row)) for row in body]


def tree(folder):
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_files_have_e621s_exact_headers(synth):
    out, _ = synth
    names = sorted(p.name for p in (out / "export").iterdir())
    assert names == [
        f"{kind}-2024-01-01.csv.gz" for kind in ("posts", "tag_aliases", "tag_implications", "tags")
    ]
    for kind, header in HEADERS.items():
        with gzip.open(out / "export" / f"{kind}-2024-01-01.csv.gz", "rt", encoding="utf-8") as f:
            assert f.readline() == header + "\n"
        width = header.count(",") + 1
        assert all(
            len(row) == width for row in read_csv(out / "export" / f"{kind}-2024-01-01.csv.gz")
        )


def test_posts_show_every_feature_the_builder_meets(synth):
    out, report = synth
    posts = rows(out, "posts")
    assert len(posts) == report.posts == 120
    assert {p["is_deleted"] for p in posts} == {"t", "f"} and "t" in {
        p["is_pending"] for p in posts
    }
    assert {"webm", "swf", "png", "jpg"} <= {p["file_ext"] for p in posts}
    assert {p["rating"] for p in posts} == {"s", "q", "e"}
    ids = {p["id"] for p in posts}
    parents = [p["parent_id"] for p in posts if p["parent_id"]]
    assert parents and set(parents) <= ids and any(p["parent_id"] == "" for p in posts)
    assert any("\n" in p["description"] and '"' in p["description"] for p in posts)
    assert any("." not in p["created_at"] for p in posts) and any(
        "." in p["created_at"] for p in posts
    )
    assert all(len(p["md5"]) == 32 for p in posts)
    assert report.kinds["normal"] > 90 and report.kinds["deleted"] and report.kinds["webm"]


def test_relations_hold_a_chain_a_cycle_and_inactive_rules(synth):
    out, _ = synth
    aliases = rows(out, "tag_aliases")
    implications = rows(out, "tag_implications")
    assert {a["status"] for a in aliases} == {"active", "retired", "deleted"}
    assert {"active", "deleted"} <= {i["status"] for i in implications}
    edges = {
        (i["antecedent_name"], i["consequent_name"])
        for i in implications
        if i["status"] == "active"
    }
    assert {("synth_chain_c", "synth_chain_b"), ("synth_chain_b", "synth_chain_a")} <= edges
    assert {
        ("synth_cycle_a", "synth_cycle_b"),
        ("synth_cycle_b", "synth_cycle_c"),
        ("synth_cycle_c", "synth_cycle_a"),
    } <= edges
    tags = rows(out, "tags")
    counts = {t["name"]: int(t["post_count"]) for t in tags}
    assert sum(counts.values()) == sum(len(p["tag_string"].split()) for p in rows(out, "posts"))


def test_categories_and_images_follow_the_labels(synth):
    out, report = synth
    categories = CategorySet.load(out / "categories")
    shipped = CategorySet.load()
    assert all(categories.tags(h) == shipped.tags(h)[:3] for h in shipped.head_names)
    labels = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    posts = {int(p["id"]): p for p in rows(out, "posts")}
    stored = 0
    for record in labels:
        post = posts[record["id"]]
        path = (
            out
            / "site"
            / "data"
            / post["md5"][:2]
            / post["md5"][2:4]
            / f"{post['md5']}.{post['file_ext']}"
        )
        if not path.is_file():
            continue
        stored += 1
        data = path.read_bytes()
        assert hashlib.md5(data).hexdigest() == post["md5"]
        with Image.open(io.BytesIO(data)) as image:
            assert image.size == (int(post["image_width"]), int(post["image_height"]))
            # The rating sets the background; the motifs sit in grid cells away from corners.
            corner = image.convert("RGB").getpixel((1, 1))
            expected = BACKGROUNDS[record["rating"]]
            assert all(abs(c - e) <= 20 for c, e in zip(corner, expected))
    assert stored == report.images > 80
    samples = list((out / "site" / "data" / "sample").rglob("*.jpg"))
    assert 0 < len(samples) < stored


def test_the_same_seed_writes_the_same_files(tmp_path):
    for name in ("a", "b"):
        write_synthetic(tmp_path / name, 30, seed=1, tags_per_head=2)
    write_synthetic(tmp_path / "c", 30, seed=2, tags_per_head=2)
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    assert tree(tmp_path / "a") != tree(tmp_path / "c")


def test_plain_csv_without_images(tmp_path):
    report = write_synthetic(tmp_path, 20, images=False, compress=False)
    assert report.images == 0 and not (tmp_path / "site").exists()
    posts = tmp_path / "export" / "posts-2024-01-01.csv"
    assert posts.read_text(encoding="utf-8").startswith(HEADERS["posts"] + "\n")
    before = posts.read_bytes()
    with pytest.raises(DatasetError, match="already holds a synthetic export"):
        write_synthetic(tmp_path, 5, seed=9, images=False, compress=False)
    assert posts.read_bytes() == before


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"posts": 0}, "--posts and --tags-per-head must be positive; received posts=0"),
        ({"posts": 5, "tags_per_head": 0}, "tags_per_head=0"),
        ({"posts": 5, "min_side": 8}, "image sides must satisfy 16 <= min <= max"),
    ],
)
def test_bad_arguments_are_rejected(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        write_synthetic(tmp_path, **kwargs)

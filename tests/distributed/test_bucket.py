"""Shards in an object store: written whole, listed, read back, resumed and replaced, as
in a local folder (a real S3 endpoint on 127.0.0.1)."""

import json

import pytest

from furrytag_cli.core.errors import OutputError
from furrytag_cli.distributed.shards import ShardFolder, read_results, result_schema

pytest.importorskip("pyarrow")

SCORES = {"species": {"fox": 0.9, "wolf": 0.1}}


def record(i: int, model: str = "tiny@abc") -> str:
    return json.dumps(
        {
            "path": f"art/img{i}.png",
            "tags": {"species": {"fox": 0.9}},
            "rating": "safe",
            "rating_score": 0.1,
            "scores": SCORES,
            "file": {"size": 100 + i, "mtime": 1.5},
            "model": model,
        }
    )


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_shards_in_a_bucket_are_written_listed_and_read_back(s3_bucket, fmt):
    import boto3

    uri = f"s3://{s3_bucket}/runs/tags/"
    folder = ShardFolder(uri, fmt)
    assert folder.root == f"s3://{s3_bucket}/runs/tags"
    schema = result_schema({"species": ["fox", "wolf"]})
    with folder.lock():
        folder.prepare(resume=False, overwrite=False)
        folder.add(
            [record(0), record(1)], [{"path": "art/bad.png", "reason": "cannot decode"}], schema
        )
        tagged, failed, written = folder.flush()
        folder.add([record(2)], [], schema)
        folder.flush()
    assert (tagged, failed) == (2, 1)
    assert written[0] == f"s3://{s3_bucket}/runs/tags/_failures/{written[1].rsplit('/', 1)[1]}"
    listed = boto3.client("s3").list_objects_v2(Bucket=s3_bucket, Prefix="runs/tags/")
    # (pyarrow marks the folders it renamed a shard in with empty "folder/" objects)
    keys = sorted(o["Key"] for o in listed["Contents"] if not o["Key"].endswith("/"))
    assert len(keys) == 3 and all(k.rsplit("/", 1)[1].startswith("part-") for k in keys)
    records, failures = read_results(uri)
    assert [r["path"] for r in records] == ["art/img0.png", "art/img1.png", "art/img2.png"]
    assert records[0]["scores"] == SCORES and records[2]["file"] == {"size": 102, "mtime": 1.5}
    assert failures == [{"path": "art/bad.png", "reason": "cannot decode"}]

    again = ShardFolder(uri, fmt)
    keys_done, failed_paths = again.done("tiny@abc")
    assert ("art/img1.png", 101, 1.5, "tiny@abc") in keys_done and failed_paths == {"art/bad.png"}
    with pytest.raises(OutputError, match="already holds 3 shard"):
        again.prepare(resume=False, overwrite=False)
    with pytest.raises(OutputError, match="another model"):
        again.done("other@def")
    again.prepare(resume=False, overwrite=True)
    assert again.shards() == [] and again.failure_shards() == []


@pytest.mark.slow  # the S3 client retries a refused connection for a few seconds
def test_an_unreachable_store_is_one_clear_error(s3_bucket, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    folder = ShardFolder(f"s3://{s3_bucket}/tags")
    with pytest.raises(OutputError, match=f"cannot list s3://{s3_bucket}/tags") as refused:
        folder.shards()
    assert "credentials in the environment (AWS_* for s3://" in str(refused.value)


def test_an_upload_cut_short_is_never_a_shard_and_the_next_run_removes_it(s3_bucket):
    import boto3

    s3 = boto3.client("s3")
    # What the store keeps of an upload cut short: the part sent, under the hidden name.
    s3.put_object(Bucket=s3_bucket, Key="tags/.part-1-00000.parquet.0badc0de.tmp", Body=b"PAR1")
    s3.put_object(Bucket=s3_bucket, Key="tags/_failures/.part-1-00000.parquet.0badc0de.tmp")
    s3.put_object(Bucket=s3_bucket, Key="tags/notes.txt", Body=b"kept")
    folder = ShardFolder(f"s3://{s3_bucket}/tags")
    assert folder.shards() == [] and folder.failure_shards() == []
    with folder.lock():
        folder.prepare(resume=False, overwrite=False)
        folder.add([record(0)], [], result_schema({"species": ["fox", "wolf"]}))
        folder.flush()
    listed = s3.list_objects_v2(Bucket=s3_bucket)["Contents"]
    keys = [o["Key"] for o in listed if not o["Key"].endswith("/")]
    assert sorted(keys) == ["tags/notes.txt", f"tags/part-{folder.run}-00000.parquet"]


def test_a_file_uri_is_a_local_folder(tmp_path):
    folder = ShardFolder((tmp_path / "my tags").as_uri())
    assert folder.root == tmp_path / "my tags"
    with folder.lock():
        folder.prepare(resume=False, overwrite=False)
        folder.add([record(0)], [{"path": "art/bad.png", "reason": "cannot decode"}], None)
        folder.flush()
    records, failures = read_results((tmp_path / "my tags").as_uri())
    assert [r["path"] for r in records] == ["art/img0.png"] and len(failures) == 1


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_a_part_file_of_another_program_is_refused_by_resume_not_read(tmp_path, fmt):
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Spark and Hadoop name their output files part-*, as tag --ray does.
    other = tmp_path / f"part-00000-c0ffee.{fmt}"
    if fmt == "parquet":
        pq.write_table(pa.table({"user": [1, 2]}), other)
    else:
        other.write_text('{"user": 1}\n')
    folder = ShardFolder(tmp_path, fmt)
    with pytest.raises(OutputError, match="is not a shard of furrytag tag --ray") as refused:
        folder.done("tiny@abc")
    assert str(other) in str(refused.value) and "-o" in str(refused.value)

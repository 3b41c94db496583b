"""One small Ray cluster on this machine for the whole test session."""

import pytest

S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "furrytag",
    "AWS_SECRET_ACCESS_KEY": "furrytag",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory, s3_server):
    """Ray started once (2 CPUs, a small object store, no dashboard), shut down at the end;
    its workers reach the session's S3 endpoint as a cluster's nodes reach a bucket."""
    import ray

    home = tmp_path_factory.mktemp("ray-furrytag-home")
    env = {"FURRYTAG_HOME": str(home), "AWS_ENDPOINT_URL": s3_server, **S3_CREDENTIALS}
    ray.init(
        num_cpus=2,
        object_store_memory=100 * 1024**2,
        include_dashboard=False,
        configure_logging=False,
        log_to_driver=False,
        runtime_env={"env_vars": env},
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def ray_images(tmp_path_factory):
    """A folder of 24 small JPEG and PNG images."""
    import numpy as np
    from PIL import Image

    folder = tmp_path_factory.mktemp("ray-images")
    rng = np.random.default_rng(3)
    for i in range(24):
        pixels = (rng.random((40 + i, 56, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:02d}.{'png' if i % 3 == 0 else 'jpg'}")
    return folder


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 endpoint on 127.0.0.1 (moto's server), for the session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_server, monkeypatch, tmp_path):
    """An empty bucket; the environment points pyarrow and boto3 at the server."""
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    for name, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    name = f"furrytag-{tmp_path.name.lower().replace('_', '-')[-40:]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name

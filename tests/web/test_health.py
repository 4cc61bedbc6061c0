import dataclasses

import embedded
from app import create_app


def test_healthz_reports_both_services_up(client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": {"ok": True}, "object_store": {"ok": True}}
    assert response.headers["Cache-Control"] == "no-store"


def test_healthz_is_503_when_the_database_is_down(test_settings) -> None:
    settings = dataclasses.replace(
        test_settings, database_url=f"postgresql+psycopg://nobody@127.0.0.1:{embedded.free_port()}/none")
    response = create_app({"TESTING": True}, settings=settings).test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["status"] == "unavailable"
    assert response.json["database"] == {"ok": False, "error": "unreachable"}
    assert response.json["object_store"] == {"ok": True}


def test_healthz_is_503_when_the_object_store_is_down(test_settings) -> None:
    settings = dataclasses.replace(test_settings, s3_endpoint=f"127.0.0.1:{embedded.free_port()}")
    response = create_app({"TESTING": True}, settings=settings).test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["database"] == {"ok": True}
    assert response.json["object_store"] == {"ok": False, "error": "unreachable"}
    # a public endpoint names no host, port or credential
    assert settings.s3_endpoint not in response.get_data(as_text=True)


def test_healthz_reports_wrong_storage_credentials_as_down(test_settings) -> None:
    settings = dataclasses.replace(test_settings, s3_secret_key="not-the-secret")
    response = create_app({"TESTING": True}, settings=settings).test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["object_store"]["ok"] is False

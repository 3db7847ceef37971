"""https receivers with the address pinned: the request connects to the checked address, yet
SNI and the certificate check use the URL's host name. A TLS-only receiver on loopback with a
certificate for `localhost` alone (no IP in it), from a CA made for the test: delivered, so
the name was verified, not the address; a certificate for another name is refused."""

from __future__ import annotations

import datetime
import ssl

import pytest
from pytest_httpserver import HTTPServer

from tests.alerts.factories import ChannelFactory, DeliveryFactory
from trace_web.alerts.delivery import delivery_attempt
from trace_web.alerts.models import ChannelKind, DeliveryStatus

pytestmark = pytest.mark.django_db


def _pki(tmp_path, server_name: str):
    """A CA (written as the bundle) and a server certificate for `server_name` it signed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def build(subject, issuer, key, signer, *, ca: bool, names=()):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("Trace test CA", "Trace test CA", ca_key, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build(server_name, "Trace test CA", key, ca_key, ca=False, names=[server_name])
    bundle, cert_file, key_file = (tmp_path / n for n in ("ca.pem", "cert.pem", "key.pem"))
    bundle.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return str(bundle), context


@pytest.fixture
def tls_receiver(tmp_path, settings, request):
    bundle, context = _pki(tmp_path, request.param)
    settings.TRACE_DELIVERY_ALLOW_PRIVATE = True
    settings.TRACE_DELIVERY_CA_BUNDLE = bundle
    settings.TRACE_OUTBOX_FLUSH_ON_COMMIT = False
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context)
    server.start()
    yield server
    server.clear()
    server.stop()


def attempt(url: str):
    delivery = DeliveryFactory(channel=ChannelFactory(kind=ChannelKind.WEBHOOK, target=url))
    delivery_attempt(delivery_id=delivery.pk, worker_id="test")
    delivery.refresh_from_db()
    return delivery


@pytest.mark.parametrize("tls_receiver", ["localhost"], indirect=True)
def test_https_to_a_pinned_address_verifies_the_host_name(tls_receiver):
    tls_receiver.expect_request("/hook").respond_with_json({"id": "tls-1"})
    delivery = attempt(f"https://localhost:{tls_receiver.port}/hook")
    assert (delivery.status, delivery.provider_message_id) == (DeliveryStatus.DELIVERED, "tls-1")
    [(request, _)] = tls_receiver.log
    assert request.headers["Host"] == f"localhost:{tls_receiver.port}"
    assert request.headers["Idempotency-Key"] == str(delivery.pk)


@pytest.mark.parametrize("tls_receiver", ["someone-else.test"], indirect=True)
def test_a_certificate_for_another_name_is_refused(tls_receiver):
    tls_receiver.expect_request("/hook").respond_with_data("ok")
    delivery = attempt(f"https://localhost:{tls_receiver.port}/hook")
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.error == "connection failed (SSLError)"
    assert tls_receiver.log == []

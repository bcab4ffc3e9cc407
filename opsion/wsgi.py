import io
import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsion.settings")

django_application = get_wsgi_application()


def application(environ: dict, start_response):
    """Django's WSGI application, reading a body sent in chunks (`Transfer-Encoding: chunked`, no Content-Length).

    Django reads CONTENT_LENGTH bytes of a body, and none when it is missing, so a JSON body streamed by a client
    (Go's http with an io.Reader, fetch with a ReadableStream, httpx with an iterator) reached the API empty:
    "The request body must be a JSON object." gunicorn decodes the chunks and marks such an input as ending on its
    own (`wsgi.input_terminated`): up to one byte over the upload limit is read here and given its length, so a
    body within the limit is read as any other and a longer one is refused as too large (the server reads past
    the rest before the next request on the connection).
    """
    if (
        environ.get("wsgi.input_terminated")
        and not environ.get("CONTENT_LENGTH")
        and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    ):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = environ["wsgi.input"].read() if limit is None else environ["wsgi.input"].read(limit + 1)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
    return django_application(environ, start_response)

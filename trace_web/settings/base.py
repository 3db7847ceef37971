"""Django core: installed apps, middleware, templates, REST framework and OpenAPI."""

from pathlib import Path

from trace_web.settings.env import ImproperlyConfiguredEnv, env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent
TRACE_HOME = Path(env_str("TRACE_HOME", str(BASE_DIR / ".trace"))).resolve()

DEBUG = env_bool("TRACE_DEBUG", False)
ALLOWED_HOSTS = env_list("TRACE_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc served from our own static files
    "django_celery_beat",
    "trace_web.orgs",
    "trace_web.datasets",
    "trace_web.orchestration",
    "trace_web.chain_sync",
    "trace_web.query",
    "trace_web.udf",
    "trace_web.alerts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files (admin, Swagger UI, Redoc) from the web process itself, under gunicorn too.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "trace_web.urls"
WSGI_APPLICATION = "trace_web.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
# WhiteNoise serves the installed apps' static files where they are (found at start-up), so
# there is no collectstatic step and no STATIC_ROOT.
WHITENOISE_USE_FINDERS = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "trace_web.errors.api_exception_handler",
    "DEFAULT_PARSER_CLASSES": [
        "trace_web.parsers.StrictJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "user": env_str("TRACE_USER_API_RATE", "100/min"),
        "sign_in": env_str("TRACE_SIGN_IN_RATE", "20/min"),
    },
}
# Bodies larger than this are refused (413) before they are read whole; a DAG's YAML, a task's
# outputs and a webhook payload all fit well under it.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("TRACE_MAX_BODY_BYTES", 2_621_440)

SPECTACULAR_SETTINGS = {
    "TITLE": "Trace API",
    "DESCRIPTION": "Control plane of the Trace blockchain data platform.",
    "VERSION": "1",
    # 3.1: JSON Schema proper, so the task API's pydantic models (task_reports) document
    # themselves, nullable fields included.
    "OAS_VERSION": "3.1.0",
    # One name per choice set that several components share.
    "ENUM_NAME_OVERRIDES": {
        "ExportFormatEnum": "trace_web.query.results.EXPORT_FORMATS",
        "QueryFormatEnum": "trace_web.query.results.QUERY_FORMATS",
        # Tasks' statuses keep their name beside deliveries' ones.
        "StatusEnum": "trace_web.orchestration.models.TaskStatus",
        "AlertSeverityEnum": "trace_web.alerts.models.Severity",
        "AlertSeverityNameEnum": "trace_web.alerts.spec.SEVERITIES",  # pydantic's, no labels
        "ChannelKindEnum": "trace_web.alerts.models.ChannelKind",
        "DeliveryStatusEnum": "trace_web.alerts.models.DeliveryStatus",
        "AlertDatasetEnum": "trace_web.alerts.spec.DATASETS",
    },
    "SERVE_INCLUDE_SCHEMA": False,
    # Pinned copies from drf-spectacular-sidecar instead of an unpinned CDN: the docs pages
    # work offline and in a VPC without egress.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The path converters of trace_web/converters.py.
    "PATH_CONVERTER_OVERRIDES": {
        "id": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
        "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$"},
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "trace_web.orgs.serializers.document_throttling",
    ],
}

# Linked from the `/` page; Flower is a separate process (`trace lite up` starts it here).
TRACE_FLOWER_URL = env_str("TRACE_FLOWER_URL", "http://127.0.0.1:5555/")

# Text lines (default) or one JSON object per line; either way a task's lines carry its org,
# DAG, job, task and attempt (trace_web.observability.logs).
TRACE_LOG_FORMAT = env_str("TRACE_LOG_FORMAT", "text")
if TRACE_LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfiguredEnv(
        f"TRACE_LOG_FORMAT must be text or json, got {TRACE_LOG_FORMAT!r}"
    )
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"task": {"()": "trace_web.observability.logs.TaskContextFilter"}},
    "formatters": {
        "text": {
            "()": "trace_web.observability.logs.TextFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {"()": "trace_web.observability.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": TRACE_LOG_FORMAT,
            "filters": ["task"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("TRACE_LOG_LEVEL", "INFO")},
}

# GET /metrics (Prometheus): open when empty (serve it on an internal network only), else it
# requires `Authorization: Bearer <this>`.
TRACE_METRICS_TOKEN = env_str("TRACE_METRICS_TOKEN", "")

"""SageMaker runtime stand-in: ``POST /endpoints/{name}/invocations`` with the container contract.

Endpoints come from the template (Endpoint -> EndpointConfig -> ProductionVariants -> Model ->
PrimaryContainer.Image/ModelDataUrl); the model artifact is read from (moto) S3, exactly the object the cloud endpoint
would load. Each container *kind* is a class in ``CONTAINER_KINDS`` chosen by the image URI: XGBoost (the built-in
algorithm container, text/csv in, one score per line out) and PyTorch (the pytorch-inference framework container:
the artifact's code/inference.py is imported and model_fn/input_fn/predict_fn/output_fn are called as the
SageMaker PyTorch serving toolkit calls them). Others can be added by subclassing ``ModelContainer`` and appending
to ``CONTAINER_KINDS``.

Model loading lives in ``load_xgboost_model`` only, so a test can check that the stand-in scores exactly like the
in-memory model (``XGBoostContainer.from_model_tarball(path).predict(rows)``).

Errors use the SageMaker runtime error shapes botocore understands (rest-json: ``X-Amzn-ErrorType`` header and a JSON
body): ModelError 424 (with OriginalStatusCode/OriginalMessage/LogStreamArn), ThrottlingException 400,
ServiceUnavailable 503, ValidationError 400, InternalFailure 500, ModelNotReadyException 429.
"""
from __future__ import annotations

import csv
import importlib.util
import inspect
import io
import itertools
import json
import logging
import pickle
import random
import sys
import tarfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

log = logging.getLogger("localcloud.sagemaker")

ERROR_STATUS = {"ThrottlingException": 400, "ModelError": 424, "ServiceUnavailable": 503, "ValidationError": 400,
                "InternalFailure": 500, "ModelNotReadyException": 429, "InternalDependencyException": 530}


class ContainerError(Exception):
    """The container answered with a non-2xx status (SageMaker turns it into a ModelError)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# -- model loading (the one place) ------------------------------------------------------------------------------
def extract_model_tarball(data: bytes | str | Path, destination: str | Path) -> Path:
    """Extract a SageMaker model.tar.gz (bytes or path) into ``destination`` (like /opt/ml/model)."""
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    source = io.BytesIO(data) if isinstance(data, bytes) else open(data, "rb")
    with source, tarfile.open(fileobj=source, mode="r:*") as archive:
        archive.extractall(destination, filter="data")
    return destination


def _model_files(model_dir: Path) -> list[Path]:
    files = sorted(p for p in Path(model_dir).iterdir() if p.is_file() and not p.name.startswith("."))
    preferred = [p for p in files if p.name == "xgboost-model"]
    return preferred or files


def load_xgboost_model(model_dir: str | Path):
    """Load the booster the SageMaker XGBoost container would load from ``model_dir`` (file ``xgboost-model``,
    else the first file; pickled boosters and native xgboost formats both work), with nthread=1."""
    import xgboost

    files = _model_files(Path(model_dir))
    if not files:
        raise ContainerError(500, f"no model file in {model_dir}")
    path = files[0]
    try:
        with open(path, "rb") as fh:
            booster = pickle.load(fh)
    except Exception:  # noqa: BLE001 - not a pickle: the native format, as the container tries next
        booster = xgboost.Booster(params={"nthread": 1})
        booster.load_model(str(path))
    booster.set_param("nthread", 1)
    return booster


# -- containers -------------------------------------------------------------------------------------------------
class ModelContainer:
    """One model server (what runs in the endpoint's container)."""

    kind = "generic"

    @classmethod
    def matches(cls, image: str) -> bool:
        return False

    @classmethod
    def from_model_dir(cls, model_dir: Path, environment: dict[str, str]) -> "ModelContainer":
        raise NotImplementedError

    def invocations(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        """Answer one request; raise ContainerError for a non-2xx container response."""
        raise NotImplementedError


class XGBoostContainer(ModelContainer):
    """The SageMaker XGBoost built-in algorithm container (serving contract of sagemaker-xgboost-container)."""

    kind = "xgboost"
    CSV = "text/csv"
    ACCEPTS = ("text/csv", "application/json", "application/jsonlines")

    def __init__(self, booster):
        self.booster = booster
        self._lock = threading.Lock()  # xgboost predict is not thread-safe (the container runs one per worker)

    @classmethod
    def matches(cls, image: str) -> bool:
        return "xgboost" in image.lower()

    @classmethod
    def from_model_dir(cls, model_dir: Path, environment: dict[str, str] | None = None) -> "XGBoostContainer":
        return cls(load_xgboost_model(model_dir))

    @classmethod
    def from_model_tarball(cls, tarball: str | Path | bytes, work_dir: str | Path | None = None) -> "XGBoostContainer":
        import tempfile

        if work_dir is None:
            with tempfile.TemporaryDirectory() as tmp:
                return cls.from_model_dir(extract_model_tarball(tarball, tmp))
        return cls.from_model_dir(extract_model_tarball(tarball, work_dir))

    @staticmethod
    def parse_csv(body: bytes):
        """text/csv -> float matrix, as the container does (delimiter sniffed, empty fields are missing).

        Fast path (measured in bench/model_server.py): numpy's C CSV parser; bodies with empty fields or ragged
        rows take the row-by-row path, whose result is the same matrix (or the same error) as before."""
        import numpy as np

        text = body.strip().decode("utf-8")
        first = text.split("\n", 1)[0][:512]
        if "," in first and not any(c in first for c in ";\t|: "):
            delimiter = ","          # what the sniffer answers for plain comma-separated numbers
        else:
            try:
                sniffed = csv.Sniffer().sniff(first).delimiter
            except csv.Error:
                sniffed = ","
            delimiter = "," if sniffed.isalnum() else sniffed
        lines = text.split("\n")
        try:   # numpy's C parser (np.loadtxt; 1.7x the split-and-convert below, bench/model_server.py)
            return np.loadtxt(lines, delimiter=delimiter, dtype=float, ndmin=2, comments=None)
        except ValueError:
            pass   # empty fields (missing values) or ragged rows: the row-by-row path decides
        rows = [[v if v else "nan" for v in line.strip().split(delimiter)] for line in lines]
        return np.array(rows, dtype=float)

    def predict(self, rows):
        """Scores for a 2-D array-like of feature rows (what /invocations computes)."""
        import numpy as np

        matrix = np.asarray(rows, dtype=float)
        with self._lock:
            # inplace_predict: the same trees and the same scores as predict(DMatrix(...)) (tests check it),
            # without building a DMatrix per request (measured in bench/model_server.py)
            return self.booster.inplace_predict(matrix, missing=np.nan, validate_features=False)

    def invocations(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        if not body:
            return b"", accept or self.CSV
        content_type = (content_type or self.CSV).split(";")[0].strip().lower()
        if content_type != self.CSV:
            raise ContainerError(415, f"Content-type {content_type} not supported. Supported content-type is "
                                      "text/csv (the local stand-in implements text/csv only)")
        try:
            rows = self.parse_csv(body)
        except Exception as exc:  # noqa: BLE001
            raise ContainerError(415, f"Loading csv data failed with Exception, please ensure data is in csv "
                                      f"format:\n {type(exc)}\n {exc}") from None
        try:
            scores = self.predict(rows).tolist()
        except Exception as exc:  # noqa: BLE001
            raise ContainerError(400, f"Unable to evaluate payload provided: {exc}") from None
        accept = (accept or "").split(";")[0].strip().lower()
        if accept in ("", "*/*"):
            accept = self.CSV
        if accept == "text/csv":
            return ("\n".join(map(repr, scores)) + "\n").encode() if scores else b"", accept
        if accept == "application/json":
            return json.dumps({"predictions": [{"score": s} for s in scores]}).encode(), accept
        if accept == "application/jsonlines":
            return "".join(json.dumps({"score": s}) + "\n" for s in scores).encode(), accept
        raise ContainerError(406, f"Accept type {accept} is not supported. Please use supported accept types: "
                                  f"{list(self.ACCEPTS)}.")


_module_ids = itertools.count(1)


class PyTorchContainer(ModelContainer):
    """The SageMaker PyTorch inference container (pytorch-inference DLC with sagemaker-pytorch-inference-toolkit):
    the model directory's ``code/inference.py`` (``SAGEMAKER_PROGRAM``, default inference.py) is imported and its
    handler functions are called as the toolkit's Transformer calls them: ``model_fn(model_dir)`` once at start
    (``model_fn(model_dir, context)`` if it takes two arguments), then per request ``input_fn(body, content_type)``
    -> ``predict_fn(data, model)`` -> ``output_fn(prediction, accept)`` (or ``transform_fn(model, body,
    content_type, accept)`` if the module defines it). A (body, content type) tuple from output_fn sets the
    response type; otherwise it is the accept type. An empty or */* Accept becomes
    ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`` (the toolkit's default: application/json). An exception in user code
    is the toolkit's 500 answer (SageMaker then returns ModelError with OriginalStatusCode 500).

    Not modelled: code/requirements.txt (its packages must be installed locally), the default handlers the toolkit
    uses when inference.py omits a function (TorchScript model.pt, numpy/JSON decoders): this stand-in requires
    model_fn and either transform_fn or the other three."""

    kind = "pytorch"

    def __init__(self, module, model, environment: dict[str, str] | None = None):
        self.module = module
        self.model = model
        self.environment = environment or {}
        self._lock = threading.Lock()   # one request at a time per model, like one toolkit worker

    @classmethod
    def matches(cls, image: str) -> bool:
        return "pytorch-inference" in image.lower() or "pytorch-serving" in image.lower()

    @staticmethod
    def load_module(model_dir: Path, program: str = "inference.py"):
        code_dir = Path(model_dir) / "code"
        path = code_dir / program
        if not path.is_file():
            raise FileNotFoundError(f"{program} not found in {code_dir} (the PyTorch container imports "
                                    f"code/{program} from model.tar.gz)")
        name = f"_localcloud_user_module_{next(_module_ids)}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path} as a module")
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(code_dir))   # the toolkit puts the code directory on sys.path
        try:
            spec.loader.exec_module(module)
        finally:
            try:
                sys.path.remove(str(code_dir))
            except ValueError:
                pass
        for required in ("model_fn",):
            if not callable(getattr(module, required, None)):
                raise AttributeError(f"code/{program} has no {required}")
        if not callable(getattr(module, "transform_fn", None)):
            missing = [f for f in ("input_fn", "predict_fn", "output_fn") if not callable(getattr(module, f, None))]
            if missing:
                raise AttributeError(f"code/{program} defines neither transform_fn nor {', '.join(missing)} "
                                     "(the local stand-in does not implement the toolkit's default handlers)")
        return module

    @classmethod
    def from_model_dir(cls, model_dir: Path, environment: dict[str, str] | None = None) -> "PyTorchContainer":
        environment = environment or {}
        module = cls.load_module(model_dir, environment.get("SAGEMAKER_PROGRAM", "inference.py"))
        model_fn = module.model_fn
        try:
            takes_context = len(inspect.signature(model_fn).parameters) >= 2
        except (TypeError, ValueError):
            takes_context = False
        model = model_fn(str(model_dir), None) if takes_context else model_fn(str(model_dir))
        return cls(module, model, environment)

    @classmethod
    def from_model_tarball(cls, tarball: str | Path | bytes, work_dir: str | Path,
                           environment: dict[str, str] | None = None) -> "PyTorchContainer":
        return cls.from_model_dir(extract_model_tarball(tarball, work_dir), environment)

    def invocations(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        accept = (accept or "").split(";")[0].strip()
        if accept in ("", "*/*"):
            accept = self.environment.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "application/json")
        content_type = content_type or "application/json"
        m = self.module
        try:
            with self._lock:
                if callable(getattr(m, "transform_fn", None)):
                    result = m.transform_fn(self.model, body, content_type, accept)
                else:
                    result = m.output_fn(m.predict_fn(m.input_fn(body, content_type), self.model), accept)
        except Exception as exc:  # noqa: BLE001 - the toolkit answers 500 with the error text
            raise ContainerError(500, f"{type(exc).__name__}: {exc}") from None
        out_type = accept
        if isinstance(result, tuple):
            result, out_type = result[0], result[1]
        if isinstance(result, str):
            result = result.encode("utf-8")
        return bytes(result), out_type


CONTAINER_KINDS: list[type[ModelContainer]] = [XGBoostContainer, PyTorchContainer]


def container_kind(image: str) -> type[ModelContainer] | None:
    for kind in CONTAINER_KINDS:
        if kind.matches(image):
            return kind
    return None


# -- endpoints --------------------------------------------------------------------------------------------------
@dataclass
class Variant:
    name: str
    weight: float
    model_name: str
    image: str
    model_data_url: str
    environment: dict[str, str] = field(default_factory=dict)
    container: ModelContainer | None = None
    load_error: str | None = None
    invocations: int = 0


@dataclass
class Endpoint:
    name: str
    config_name: str
    variants: list[Variant]
    rng: random.Random = field(default_factory=random.Random)

    def pick(self, target: str | None) -> Variant:
        if target:
            for variant in self.variants:
                if variant.name == target:
                    return variant
            raise _SageMakerError("ValidationError", f"Endpoint {self.name} does not have target variant {target}.")
        weights = [max(v.weight, 0.0) for v in self.variants]
        if sum(weights) <= 0:
            weights = [1.0] * len(self.variants)
        return self.rng.choices(self.variants, weights=weights)[0]


class _SageMakerError(Exception):
    def __init__(self, code: str, message: str, status: int | None = None, extra: dict | None = None):
        super().__init__(message)
        self.code = code
        self.status = status or ERROR_STATUS.get(code, 400)
        self.extra = extra or {}


class SageMakerRuntime:
    def __init__(self, *, s3_get: Callable[[str, str], bytes], work_dir: str | Path, region: str, account_id: str,
                 on_invocation: Callable[[str, str, float], None] | None = None):
        self.s3_get = s3_get
        # (endpoint, variant, seconds) after each invocation: CloudWatch metrics
        self.on_invocation = on_invocation
        self.work_dir = Path(work_dir)
        self.region = region
        self.account_id = account_id
        self.endpoints: dict[str, Endpoint] = {}
        self._faults: list[dict] = []
        self._lock = threading.Lock()

    # -- registry -----------------------------------------------------------------------------------------------
    def register_endpoint(self, name: str, config_name: str, variants: list[Variant]) -> Endpoint:
        endpoint = Endpoint(name, config_name, variants, random.Random(name))
        for variant in variants:
            self._load(endpoint, variant)
        self.endpoints[name] = endpoint
        return endpoint

    def _load(self, endpoint: Endpoint, variant: Variant) -> None:
        kind = container_kind(variant.image)
        if kind is None:
            variant.load_error = (f"the local cloud has no stand-in for image {variant.image!r} "
                                  f"(known kinds: {[k.kind for k in CONTAINER_KINDS]})")
            log.warning("endpoint %s variant %s: %s", endpoint.name, variant.name, variant.load_error)
            return
        try:
            if not variant.model_data_url.startswith("s3://"):
                raise ValueError(f"ModelDataUrl {variant.model_data_url!r} is not an s3:// URL")
            bucket, _, key = variant.model_data_url[len("s3://"):].partition("/")
            data = self.s3_get(bucket, key)
            model_dir = extract_model_tarball(data, self.work_dir / "models" / variant.model_name)
            variant.container = kind.from_model_dir(model_dir, variant.environment)
            log.debug("endpoint %s variant %s: %s model from %s", endpoint.name, variant.name, kind.kind,
                      variant.model_data_url)
        except Exception as exc:  # noqa: BLE001 - the endpoint answers with the error instead
            variant.load_error = f"cannot load the model from {variant.model_data_url}: {type(exc).__name__}: {exc}"
            log.warning("endpoint %s variant %s: %s", endpoint.name, variant.name, variant.load_error)

    # -- control plane: UpdateEndpoint (moto 5.2.5 does not implement it) ------------------------------------------
    def update_endpoint(self, name: str, config_name: str, describe_config: Callable[[str], dict],
                        describe_model: Callable[[str], dict]) -> Endpoint:
        """Switch endpoint ``name`` to endpoint config ``config_name`` (read from moto's control plane, like the
        models it names) and serve it. The new variants' models are loaded before the switch, so invocations keep
        being served by the old config until the new one is ready (as SageMaker does). A config whose model cannot
        be loaded is refused here with ValidationException (SageMaker would accept the call, fail the update
        asynchronously and keep the old config: the outcome for traffic is the same)."""
        if name not in self.endpoints:
            raise _SageMakerError("ValidationException", f"Could not find endpoint \"{name}\".")
        try:
            config = describe_config(config_name)
        except Exception:  # noqa: BLE001 - botocore ClientError from moto
            raise _SageMakerError("ValidationException",
                                  f"Could not find endpoint configuration \"{config_name}\".") from None
        variants = []
        for v in config.get("ProductionVariants", []):
            try:
                model = describe_model(v["ModelName"])
            except Exception:  # noqa: BLE001
                raise _SageMakerError("ValidationException", f"Could not find model \"{v['ModelName']}\".") from None
            container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
            variants.append(Variant(name=v["VariantName"], weight=float(v.get("InitialVariantWeight", 1.0)),
                                    model_name=v["ModelName"], image=str(container.get("Image", "")),
                                    model_data_url=str(container.get("ModelDataUrl", "")),
                                    environment={k: str(x) for k, x in (container.get("Environment") or {}).items()}))
        endpoint = Endpoint(name, config_name, variants, random.Random(f"{name}/{config_name}"))
        for variant in variants:
            self._load(endpoint, variant)
        failed = [f"{v.name}: {v.load_error}" for v in variants if v.container is None]
        if failed:
            raise _SageMakerError("ValidationException", "the endpoint update failed, the endpoint keeps "
                                  f"{self.endpoints[name].config_name}: " + "; ".join(failed))
        self.endpoints[name] = endpoint   # one assignment: a request sees the old or the new config, never a mix
        log.info("endpoint %s now serves endpoint config %s", name, config_name)
        return endpoint

    # -- faults -------------------------------------------------------------------------------------------------
    def set_fault(self, endpoint: str = "*", count: int = 1, error: str = "ThrottlingException",
                  message: str | None = None) -> None:
        if error not in ERROR_STATUS:
            raise ValueError(f"unknown SageMaker error {error!r} (known: {sorted(ERROR_STATUS)})")
        with self._lock:
            self._faults.append({"endpoint": endpoint, "remaining": int(count), "error": error,
                                 "message": message})

    def clear_faults(self, endpoint: str | None = None) -> None:
        with self._lock:
            self._faults = [] if endpoint is None else [f for f in self._faults if f["endpoint"] != endpoint]

    def faults(self) -> list[dict]:
        with self._lock:
            return [dict(f) for f in self._faults]

    def _take_fault(self, endpoint: str) -> dict | None:
        with self._lock:
            for fault in sorted(self._faults, key=lambda f: f["endpoint"] == "*"):
                if fault["endpoint"] in (endpoint, "*") and fault["remaining"] > 0:
                    fault["remaining"] -= 1
                    if fault["remaining"] == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # -- invocation ---------------------------------------------------------------------------------------------
    def invoke(self, name: str, body: bytes, content_type: str = "text/csv", accept: str = "",
               target_variant: str | None = None) -> tuple[bytes, str, str]:
        """(body, content type, variant name); raises _SageMakerError with the runtime's error code."""
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            raise _SageMakerError("ValidationError", f"Endpoint {name} of account {self.account_id} not found.")
        if len(body) > 6 * 1024 * 1024:
            raise _SageMakerError("ValidationError", "Request payload is larger than the 6 MB limit.", 413)
        variant = endpoint.pick(target_variant)
        fault = self._take_fault(name)
        if fault is not None:
            raise self._fault_error(fault, endpoint, variant)
        if variant.container is None:
            raise self._model_error(endpoint, variant, 500, variant.load_error or "model not loaded")
        variant.invocations += 1
        try:
            data, out_type = variant.container.invocations(body, content_type, accept)
        except ContainerError as exc:
            raise self._model_error(endpoint, variant, exc.status, str(exc)) from None
        return data, out_type, variant.name

    def _log_stream_arn(self, endpoint: Endpoint) -> str:
        return f"arn:aws:logs:{self.region}:{self.account_id}:log-group:/aws/sagemaker/Endpoints/{endpoint.name}"

    def _model_error(self, endpoint: Endpoint, variant: Variant, status: int, message: str) -> _SageMakerError:
        kind = "client" if status < 500 else "server"
        text = (f"Received {kind} error ({status}) from {variant.name} with message \"{message}\". See "
                f"{self._log_stream_arn(endpoint)} in account {self.account_id} for more information.")
        return _SageMakerError("ModelError", text, 424, {"OriginalStatusCode": status, "OriginalMessage": message,
                                                         "LogStreamArn": self._log_stream_arn(endpoint)})

    def _fault_error(self, fault: dict, endpoint: Endpoint, variant: Variant) -> _SageMakerError:
        error = fault["error"]
        if error == "ModelError":
            return self._model_error(endpoint, variant, 400, fault["message"] or "injected model error")
        messages = {"ThrottlingException": "Rate exceeded", "ServiceUnavailable": "Service Unavailable",
                    "ModelNotReadyException": "Model is not ready", "InternalFailure": "Internal failure"}
        return _SageMakerError(error, fault["message"] or messages.get(error, f"injected {error}"))

    def wsgi_invoke(self, name: str, request):
        from werkzeug.wrappers import Response

        from .gateway import aws_error

        started = time.perf_counter()
        try:
            data, out_type, variant = self.invoke(
                name, request.get_data(), request.headers.get("Content-Type", "text/csv"),
                request.headers.get("Accept", ""), request.headers.get("X-Amzn-SageMaker-Target-Variant"))
        except _SageMakerError as exc:
            return aws_error(exc.code, str(exc), exc.status, exc.extra)
        if self.on_invocation is not None:  # CloudWatch metrics (localcloud/metrics.py ServiceMetrics)
            self.on_invocation(name, variant, time.perf_counter() - started)
        return Response(data, status=200, content_type=out_type,
                        headers={"X-Amzn-Invoked-Production-Variant": variant, "x-amzn-RequestId": str(uuid.uuid4())})

    def status(self) -> dict:
        return {name: {"config": e.config_name,
                       "variants": [{"name": v.name, "weight": v.weight, "model": v.model_name, "image": v.image,
                                     "model_data_url": v.model_data_url,
                                     "kind": v.container.kind if v.container else None,
                                     "error": v.load_error, "invocations": v.invocations} for v in e.variants]}
                for name, e in self.endpoints.items()}


"""The stack's SageMaker part: the models' execution role, one CfnModel per distinct (kind, artifact), and the
endpoints (one real-time endpoint with the variants as production variants, or one serverless endpoint per
variant). ``ModelEndpoints`` is built from explicit inputs into the stack's scope (logical ids unchanged) and is the
handles object the rest of the stack reads.
"""
from __future__ import annotations

from pathlib import Path

from aws_cdk import (
    ArnFormat,
    Aws,
    CfnMapping,
    Fn,
    Stack,
    Token,
    aws_iam as iam,
    aws_s3 as s3,
    aws_s3_assets as s3_assets,
    aws_sagemaker as sagemaker,
)

from .config import Config, ConfigError
from .ids import pascal
from .images import REGISTRIES, REPOSITORIES, region_problem

ROOT = Path(__file__).resolve().parent.parent


def resolve_path(path: str) -> Path:
    """Paths in cdk.json are relative to the repository root (not to the current directory)."""
    candidate = Path(path)
    return candidate if candidate.is_absolute() else ROOT / candidate


class ModelEndpoints:
    def __init__(self, scope: Stack, cfg: Config, artifacts_bucket: s3.Bucket):
        self.scope, self.cfg, self.artifacts_bucket = scope, cfg, artifacts_bucket
        self._models()

    def _models(self) -> None:
        images = self._role_and_images()
        self._endpoints(self._variant_models(images))

    def _role_and_images(self) -> dict[str, str]:
        """The SageMaker execution role and the container image URI of each model kind the variants use."""
        cfg = self.cfg
        kinds = list(dict.fromkeys(v.kind for v in cfg.variants))
        # Container image per kind and region: <registry account>.dkr.ecr.<region>.<suffix>/<repository>:<tag>
        # (registry accounts: infra/image_registries.json, generated from the SageMaker SDK's image map by
        # scripts/update_image_map.py; XGBoost built-in container, PyTorch inference DLC, CPU, py3).
        images: dict[str, str] = {}
        self.model_role = iam.Role(
            self.scope, "ModelRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"SageMaker execution role of the models ({', '.join(kinds)}): reads their artifacts, "
                        "pulls the container images, writes the endpoint's logs")
        for kind in kinds:
            if not Token.is_unresolved(self.scope.region):   # a concrete region: fail at synth, not on Fn::FindInMap
                problem = region_problem(kind, self.scope.region, cfg.image_tag(kind))
                if problem:
                    raise ConfigError(problem)
            registry = CfnMapping(self.scope, f"{pascal(kind)}ImageRegistry",
                                  mapping={region: {"account": account}
                                           for region, account in REGISTRIES[kind].items()})
            registry_account = registry.find_in_map(Aws.REGION, "account")
            images[kind] = Fn.join("", [registry_account, ".dkr.ecr.", Aws.REGION, ".", Aws.URL_SUFFIX, "/",
                                        REPOSITORIES[kind], ":", cfg.image_tag(kind)])
            self.model_role.add_to_policy(iam.PolicyStatement(
                sid=f"Pull{pascal(kind)}Image",
                actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                resources=[Fn.join("", ["arn:", Aws.PARTITION, ":ecr:", Aws.REGION, ":", registry_account,
                                        ":repository/", REPOSITORIES[kind]])]))
        self.model_images = images
        self.model_role.add_to_policy(iam.PolicyStatement(
            sid="EcrAuthorizationToken", actions=["ecr:GetAuthorizationToken"], resources=["*"]))
        self.model_role.add_to_policy(iam.PolicyStatement(
            sid="EndpointLogs",
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=[self.scope.format_arn(service="logs", resource="log-group",
                                       resource_name="/aws/sagemaker/Endpoints/*",
                                       arn_format=ArnFormat.COLON_RESOURCE_NAME)]))
        # Versions promoted later (scripts/promote.py) live in the artifacts bucket under models/<version>/.
        self.model_role.add_to_policy(iam.PolicyStatement(
            sid="ReadPromotedModels", actions=["s3:GetObject"],
            resources=[self.artifacts_bucket.arn_for_objects("models/*")]))
        return images

    def _variant_models(self, images: dict[str, str]) -> dict[str, sagemaker.CfnModel]:
        """The model of each variant's name."""
        cfg = self.cfg
        # One CfnModel per distinct (kind, artifact): "Model" for the stack's default kind and artifact,
        # "Model<Variant>" for a variant of another kind or with its own artifact (A/B tests).
        self.model_assets: dict[str, s3_assets.Asset] = {}
        self.models: dict[tuple[str, str], sagemaker.CfnModel] = {}
        variant_models: dict[str, sagemaker.CfnModel] = {}
        default_artifact = cfg.pytorch_model_artifact if cfg.model_kind == "pytorch" else cfg.model_artifact
        for variant in cfg.variants:
            artifact = cfg.artifact_of(variant)
            key = (variant.kind, artifact)
            if key not in self.models:
                suffix = "" if key == (cfg.model_kind, default_artifact) else pascal(variant.name)
                if artifact not in self.model_assets:
                    asset = self._model_asset(f"ModelArtifact{suffix}", artifact, variant.kind)
                    self.model_role.add_to_policy(iam.PolicyStatement(
                        actions=["s3:GetObject"], resources=[asset.bucket.arn_for_objects(asset.s3_object_key)]))
                    self.model_assets[artifact] = asset
                asset = self.model_assets[artifact]
                environment = {"MODEL_VERSION": cfg.version_of(variant), "FEATURE_SET": cfg.feature_set}
                if variant.kind == "pytorch":   # the serving toolkit imports code/<SAGEMAKER_PROGRAM>
                    environment.update(SAGEMAKER_PROGRAM="inference.py",
                                       SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT="text/csv")
                model = sagemaker.CfnModel(
                    self.scope, f"Model{suffix}", execution_role_arn=self.model_role.role_arn,
                    primary_container=sagemaker.CfnModel.ContainerDefinitionProperty(
                        image=images[variant.kind], model_data_url=asset.s3_object_url, mode="SingleModel",
                        environment=environment))
                model.node.add_dependency(self.model_role)   # the role's policy exists before the endpoint starts
                self.models[key] = model
            variant_models[variant.name] = self.models[key]
        self.model_asset = self.model_assets[cfg.artifact_of(cfg.variants[0])]
        return variant_models

    def _endpoints(self, variant_models: dict[str, sagemaker.CfnModel]) -> None:
        """instance mode: one real-time endpoint, the variants are its production variants (invoke_model sends
        TargetVariant). serverless mode: one serverless endpoint per variant, each with one production variant named
        after the variant (Serverless Inference does not support multiple production variants, SageMaker Developer
        Guide, "Deploy models with Amazon SageMaker Serverless Inference"); invoke_model sends each user to the
        endpoint of their variant. The first variant's endpoint keeps the ids "EndpointConfig"/"Endpoint" (it is
        SAGEMAKER_ENDPOINT_NAME and the EndpointName output), the others get "EndpointConfig<Variant>"/
        "Endpoint<Variant>"."""
        cfg, endpoint = self.cfg, self.cfg.endpoint

        def production_variant(variant, weight: float):
            kwargs = dict(variant_name=variant.name, model_name=variant_models[variant.name].attr_model_name,
                          initial_variant_weight=weight)
            if endpoint.mode == "serverless":
                kwargs["serverless_config"] = sagemaker.CfnEndpointConfig.ServerlessConfigProperty(
                    max_concurrency=endpoint.serverless_max_concurrency,
                    memory_size_in_mb=endpoint.serverless_memory_mb)
            else:
                kwargs.update(instance_type=endpoint.instance_type, initial_instance_count=endpoint.instance_count)
            return sagemaker.CfnEndpointConfig.ProductionVariantProperty(**kwargs)

        if endpoint.mode == "serverless":
            groups = [(variant.name, [variant]) for variant in cfg.variants]
        else:
            groups = [(cfg.variants[0].name, list(cfg.variants))]
        self.endpoint_configs: dict[str, sagemaker.CfnEndpointConfig] = {}
        self.endpoints: dict[str, sagemaker.CfnEndpoint] = {}      # variant name -> the endpoint serving it
        for index, (key, members) in enumerate(groups):
            suffix = "" if index == 0 else pascal(key)
            if endpoint.mode == "serverless" and len(members) != 1:   # what SageMaker would refuse at deploy
                raise ConfigError(f"serverless endpoint {key}: {len(members)} production variants (at most 1)")
            capture = None
            if endpoint.mode == "instance" and endpoint.data_capture_percent:
                capture = sagemaker.CfnEndpointConfig.DataCaptureConfigProperty(
                    enable_capture=True, initial_sampling_percentage=endpoint.data_capture_percent,
                    destination_s3_uri=self.artifacts_bucket.s3_url_for_object("datacapture"),
                    capture_options=[sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode=mode)
                                     for mode in ("Input", "Output")])
            config = sagemaker.CfnEndpointConfig(
                self.scope, f"EndpointConfig{suffix}", data_capture_config=capture,
                production_variants=[production_variant(v, v.weight if len(members) > 1 else 1.0) for v in members])
            created = sagemaker.CfnEndpoint(self.scope, f"Endpoint{suffix}",
                                            endpoint_config_name=config.attr_endpoint_config_name)
            self.endpoint_configs[key] = config
            for member in members:
                self.endpoints[member.name] = created
        if endpoint.mode == "instance" and endpoint.data_capture_percent:
            self.model_role.add_to_policy(iam.PolicyStatement(
                sid="WriteDataCapture", actions=["s3:PutObject"],
                resources=[self.artifacts_bucket.arn_for_objects("datacapture/*")]))
        primary = self.endpoints[cfg.variants[0].name]
        self.endpoint = primary
        self.endpoint_config = self.endpoint_configs[cfg.variants[0].name]
        self.endpoint_name = primary.attr_endpoint_name
        self.endpoint_arn = primary.ref   # Ref of AWS::SageMaker::Endpoint is its ARN
        self.endpoint_arns = list(dict.fromkeys(self.endpoints[v.name].ref for v in cfg.variants))
        # variant -> endpoint name, for MODEL_VARIANTS and the ModelVariants output
        self.variant_endpoint_names = {v.name: self.endpoints[v.name].attr_endpoint_name for v in cfg.variants}

    def _model_asset(self, construct_id: str, artifact: str, kind: str = "xgboost") -> s3_assets.Asset:
        path = resolve_path(artifact)
        if not path.is_file():
            key = "pytorchModelArtifact" if kind == "pytorch" else "modelArtifact"
            raise ConfigError(f"{kind} model artifact {artifact} not found ({path}): run `make model` first (it "
                              "trains both kinds into model/artifacts/), or point the variant's modelArtifact "
                              f"(or {key}) context at an existing SageMaker {kind} model.tar.gz")
        self._check_artifact(artifact, path, kind)
        return s3_assets.Asset(self.scope, construct_id, path=str(path))

    def _check_artifact(self, artifact: str, path: Path, kind: str) -> None:
        """The artifact must be of the variant's kind and trained on the deployed feature set: a mismatch would
        deploy fine and then quarantine every batch at run time."""
        from model.registry import PromotionError, artifact_info

        try:
            info = artifact_info(path)
        except (PromotionError, OSError, ValueError) as exc:
            raise ConfigError(f"model artifact {artifact}: {exc}") from None
        if info["kind"] != kind:
            raise ConfigError(f"model artifact {artifact} is a {info['kind']} model, but the variant serving it is "
                              f"of kind {kind}: point its modelArtifact at a {kind} model.tar.gz")
        wanted = self.cfg.feature_set
        if info["feature_set"] != wanted:
            raise ConfigError(
                f"featureSet is {wanted}, but the {kind} model artifact {artifact} was trained on feature set "
                f"{info['feature_set']}: train one for {wanted} (`.venv/bin/python model/train.py --feature-set "
                f"{wanted} --out <dir>`) and point modelArtifact / pytorchModelArtifact (or the variant's "
                f"modelArtifact) at it, or synthesize with -c featureSet={info['feature_set']}")

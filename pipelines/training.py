"""The training pipeline: ingest → validate → transform → train → evaluate → register → deploy.

``build_pipeline`` returns the pipeline function; ``compile_pipeline`` writes
the YAML that is committed next to this file and submitted to a cluster.
Register and deploy run only for a blessed model; an exit handler records
every run's outcome, with the failed stage and reason. No task is retried by
KFP: a deterministic failure fails once (see the note on retries below).
"""

from pathlib import Path

from kfp import compiler, dsl, kubernetes

from components import deploy, evaluate, ingest, record_outcome, register, train, transform, validate
from tabpipe.cluster_deploy.rollout import DEPLOYER_TOKEN_DIR
from tabpipe.run_id import RUN_ID_ENV, RUN_ID_FIELD_PATH

PIPELINE_NAME = "tabpipe-training"
COMPILED_PATH = Path(__file__).with_name("training_pipeline.yaml")

# No task-level retries: KFP would re-run a task on *any* failure, so a misspelt
# hyperparameter or bad data would fail four times with backoff. Only transient
# MLflow errors are retried, inside the task, by the MLflow client's own bounded
# HTTP retries (tabpipe.tracking.configure_http_client) and a short retry of the
# health check (tabpipe.tracking.client).


# manifests/mlflow-networkpolicy.yaml admits only pods with this label to MLflow.
MLFLOW_CLIENT_LABEL = ("tabpipe.io/mlflow-client", "true")


def _mlflow_client(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Label a task's pod so the NetworkPolicy lets it reach MLflow; give it the run id.

    The run id is an environment variable mapped from the pod's ``pipeline/runid``
    label, never an input parameter: KFP hashes every input parameter into the cache
    fingerprint after resolving placeholders, so a per-run value there would make
    every task miss the cache in every run (see :mod:`tabpipe.run_id`).
    """
    kubernetes.use_field_path_as_env(task, env_name=RUN_ID_ENV, field_path=RUN_ID_FIELD_PATH)
    return kubernetes.add_pod_label(task, *MLFLOW_CLIENT_LABEL)


# manifests/pipeline: the object store's endpoint (ConfigMap) and keys (Secret) for tasks that read
# s3:// data or push bundles. Optional: a cluster keeping everything in the image needs neither.
STORE_ENDPOINT_CONFIG_MAP = "tabpipe-pipeline-store-endpoint"
STORE_SECRET = "tabpipe-pipeline-store"
STORE_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
# manifests/pipeline/deployer-rbac.yaml: the deployer account's token; only the deploy task mounts it.
DEPLOYER_TOKEN_SECRET = "tabpipe-deployer-token"
# manifests/serving/base: the serving namespace admits smoke tests only from pods with this label.
SERVING_CLIENT_LABEL = ("tabpipe.io/serving-client", "true")


def _object_store_client(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Give a task the object store's endpoint and keys (by reference to the cluster's objects)."""
    kubernetes.use_config_map_as_env(
        task, STORE_ENDPOINT_CONFIG_MAP, {"MINIO_ENDPOINT": "MINIO_ENDPOINT"}, optional=True
    )
    return kubernetes.use_secret_as_env(task, STORE_SECRET, {key: key for key in STORE_KEYS}, optional=True)


def _cluster_deployer(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Let the deploy task act as the deployer account and reach the serving namespace."""
    kubernetes.use_secret_as_volume(task, DEPLOYER_TOKEN_SECRET, mount_path=DEPLOYER_TOKEN_DIR, optional=True)
    return kubernetes.add_pod_label(task, *SERVING_CLIENT_LABEL)


def build_pipeline() -> dsl.graph_component.GraphComponent:
    """Build the training pipeline function.

    Every parameter has a default that works on the cluster the manifests set up,
    so a run can be started from the KFP dashboard as is: the default config with
    its data paths inside the image, the in-cluster MLflow service, and an empty
    ``code_version``, which the tasks replace with the version of the code installed
    in the image (``tabpipe upload``, ``make pipeline-upload``, bakes the exact version into the
    uploaded pipeline version instead). The defaults are deterministic, so the
    committed YAML only changes when the config or the pipeline does.
    """
    from tabpipe.cluster_params import pipeline_defaults

    defaults = pipeline_defaults()

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Tabular ML: validated data, tracked search, gated registration and deployment.",
    )
    def training_pipeline(
        config_json: str = defaults["config_json"],
        mlflow_tracking_uri: str = defaults["mlflow_tracking_uri"],
        code_version: str = defaults["code_version"],
        deploy_target: str = "registry",
        serving_url: str = "http://127.0.0.1:8080",
    ) -> None:
        """Tabular ML: validated data, tracked search, gated registration and deployment.

        Args:
            config_json: The pipeline config as JSON (tabpipe.config.PipelineConfig); data paths as the
                image holds them (/app/...) or s3:// URIs. Default: configs/phishing.yaml.
            mlflow_tracking_uri: MLflow as the pipeline pods reach it.
            code_version: Recorded on every run and registered model; empty means the version of the
                code installed in the task image.
            deploy_target: registry (move the champion alias) or local-server (also load it into serving_url).
            serving_url: The Open Inference Protocol endpoint for deploy_target local-server.
        """
        common = {"config_json": config_json, "mlflow_tracking_uri": mlflow_tracking_uri}
        outcome = _mlflow_client(record_outcome(**common).set_caching_options(False))
        outcome.set_display_name("record-outcome")
        with dsl.ExitHandler(outcome, name="training"):
            stage = {**common, "code_version": code_version}
            # Every stage records its own failure in MLflow, so every pod gets the label.
            ingested = _object_store_client(_mlflow_client(ingest(**stage))).set_display_name("ingest")
            checked = _object_store_client(
                _mlflow_client(
                    validate(
                        **stage,
                        train=ingested.outputs["train"],
                        validation=ingested.outputs["validation"],
                        test=ingested.outputs["test"],
                    )
                )
            ).set_display_name("validate")
            transformed = _mlflow_client(
                transform(**stage, train=checked.outputs["clean_train"])
            ).set_display_name("transform")
            trained = _mlflow_client(
                train(
                    **stage,
                    train=checked.outputs["clean_train"],
                    validation=checked.outputs["clean_validation"],
                    preprocessor=transformed.outputs["preprocessor"],
                )
            ).set_display_name("train")
            evaluated = _mlflow_client(
                evaluate(
                    **stage,
                    model=trained.outputs["model"],
                    onnx_model=trained.outputs["onnx_model"],
                    test=checked.outputs["clean_test"],
                )
            ).set_display_name("evaluate")
            with dsl.If(evaluated.outputs["Output"] == True, name="blessed"):  # noqa: E712 (KFP condition)
                registered = _mlflow_client(
                    register(**stage, model=trained.outputs["model"])
                ).set_display_name("register")
                deployed = deploy(
                    **stage,
                    model=trained.outputs["model"],
                    onnx_model=trained.outputs["onnx_model"],
                    test=checked.outputs["clean_test"],
                    version=registered.output,
                    deploy_target=deploy_target,
                    serving_url=serving_url,
                )
                _cluster_deployer(_object_store_client(_mlflow_client(deployed))).set_display_name("deploy")

    return training_pipeline


def compile_pipeline(path: Path = COMPILED_PATH) -> Path:
    """Compile the pipeline to YAML at ``path``."""
    compiler.Compiler().compile(build_pipeline(), str(path))
    return path

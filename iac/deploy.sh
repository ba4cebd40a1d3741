#!/usr/bin/env bash
# Deploy mlpipe to AWS with CloudFormation. See iac/README.md for prerequisites and costs.
#
#   iac/deploy.sh                 build, package and deploy (needs AWS credentials)
#   iac/deploy.sh --package-only  only steps 1-3 (no AWS calls): build/ holds the merged
#                                 template, the Lambda package and the job code
#
# In order:
#   1. package the SageMaker job source: sagemaker_jobs/*.py + requirements.txt into
#      build/sagemaker_jobs/sourcedir.tar.gz (training jobs: sagemaker_submit_directory),
#      beside the raw files (processing jobs mount the prefix and run the script directly);
#      version = the git commit (plus a content hash if sagemaker_jobs/ has local changes);
#      MLPIPE_CODE_PREFIX=code/<version>, MLPIPE_CODE_VERSION=<version>;
#   2. look up the prebuilt scikit-learn image URI with the SageMaker SDK (optional extra:
#      pip install -e '.[sagemaker]'), or take SKLEARN_IMAGE_URI;
#   3. chalice package --stage dev --merge-template ../iac/template.yaml ../build
#      (run from functions/; writes build/sam.yaml + build/deployment.zip);
#   4. aws cloudformation package (uploads the Lambda package and the state machine
#      definition to PACKAGE_BUCKET) and aws cloudformation deploy (CAPABILITY_IAM +
#      CAPABILITY_AUTO_EXPAND for the SAM transform; --s3-bucket because the packaged
#      template is larger than the 51,200 bytes CloudFormation accepts inline);
#   5. upload the job code to s3://<artefact bucket>/code/<version>/. When the stack already
#      exists this happens before step 4, so the functions never point at a missing prefix;
#      on the first deploy the bucket only exists after step 4.
#
# Environment (all optional except PANDAS_LAYER_ARN for a deploy):
#   STACK_NAME                 default mlpipe-dev
#   CHALICE_STAGE              default dev (the stage in functions/.chalice/config.json)
#   AWS_REGION                 default: AWS_DEFAULT_REGION, then `aws configure get region`
#   PANDAS_LAYER_ARN           AWS SDK for pandas layer, python3.11 x86_64, in AWS_REGION:
#                              https://aws-sdk-pandas.readthedocs.io/en/stable/layers.html
#   SKLEARN_IMAGE_URI          the image to use; required when the SageMaker SDK is absent
#   SKLEARN_FRAMEWORK_VERSION  default 1.4-2 (used with the SDK)
#   TRAINING_INSTANCE_TYPE     default ml.m5.large
#   ENDPOINT_INSTANCE_TYPE     default ml.t2.medium
#   PACKAGE_BUCKET             bucket for CloudFormation artefacts; default
#                              mlpipe-deploy-<account>-<region>, created if missing
#   PYTHON, CHALICE            default: the project's .venv, else from PATH
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The merged template must sit one directory below ROOT: the state machine's DefinitionUri
# (../stepfunctions/pipeline.asl.json) is resolved relative to it.
BUILD_DIR="$ROOT/build"
JOBS_BUILD_DIR="$BUILD_DIR/sagemaker_jobs"

STACK_NAME="${STACK_NAME:-mlpipe-dev}"
CHALICE_STAGE="${CHALICE_STAGE:-dev}"
SKLEARN_FRAMEWORK_VERSION="${SKLEARN_FRAMEWORK_VERSION:-1.4-2}"
TRAINING_INSTANCE_TYPE="${TRAINING_INSTANCE_TYPE:-ml.m5.large}"
ENDPOINT_INSTANCE_TYPE="${ENDPOINT_INSTANCE_TYPE:-ml.t2.medium}"

PACKAGE_ONLY=0
case "${1:-}" in
  "") ;;
  --package-only) PACKAGE_ONLY=1 ;;
  -h | --help)
    sed -n '2,/^set -euo pipefail$/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "usage: $0 [--package-only]" >&2
    exit 2
    ;;
esac

log() { printf '==> %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required ($2)"; }

if [[ -x "$ROOT/.venv/bin/python" ]]; then
  PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
else
  PYTHON="${PYTHON:-python3}"
fi
if [[ -x "$ROOT/.venv/bin/chalice" ]]; then
  CHALICE="${CHALICE:-$ROOT/.venv/bin/chalice}"
else
  CHALICE="${CHALICE:-chalice}"
fi

need git "to version the job code"
need tar "to build sourcedir.tar.gz"
need "$PYTHON" "the project's Python (make venv)"
need "$CHALICE" "pip install -e '.[dev]' (make venv)"
if [[ "$PACKAGE_ONLY" == 0 ]]; then
  need aws "the AWS CLI, https://docs.aws.amazon.com/cli/"
fi

REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
if [[ -z "$REGION" && "$PACKAGE_ONLY" == 0 ]]; then
  REGION="$(aws configure get region || true)"
fi
if [[ -z "$REGION" ]]; then
  [[ "$PACKAGE_ONLY" == 1 ]] || die "set AWS_REGION (or AWS_DEFAULT_REGION)"
  REGION="us-east-1" # package-only: chalice needs a region to render ARNs; nothing is deployed
fi
export AWS_DEFAULT_REGION="$REGION"

# The Lambda package gets its dependencies from functions/requirements.txt (pydantic,
# pydantic-settings, ...); pandas, numpy and pyarrow come from the pandas layer and must not
# be in it (they would not fit beside the layer in Lambda's 250 MB).
REQUIREMENTS="$ROOT/functions/requirements.txt"
check_requirements() {
  if [[ ! -f "$REQUIREMENTS" ]]; then
    echo "functions/requirements.txt is missing: the Lambda package would lack pydantic"
    return
  fi
  grep -qiE '^pydantic([^-_a-z]|$)' "$REQUIREMENTS" ||
    echo "functions/requirements.txt does not list pydantic"
  grep -qiE '^pydantic[-_]settings' "$REQUIREMENTS" ||
    echo "functions/requirements.txt does not list pydantic-settings"
  if grep -qiE '^(pandas|numpy|pyarrow|scikit-learn|awswrangler)([^-_a-z]|$)' "$REQUIREMENTS"; then
    echo "functions/requirements.txt lists pandas/numpy/pyarrow/scikit-learn/awswrangler: they come from the layer (or the SageMaker container) and would exceed the Lambda size limit"
  fi
}
problems="$(check_requirements)"
if [[ -n "$problems" ]]; then
  if [[ "$PACKAGE_ONLY" == 1 ]]; then
    printf 'warning: %s\n' "$problems" >&2
  else
    die "$problems"
  fi
fi

# --- 1. the SageMaker job source -------------------------------------------------------------
log "packaging sagemaker_jobs/"
cd "$ROOT"
CODE_VERSION="$(git rev-parse --short=12 HEAD)"
if [[ -n "$(git status --porcelain -- sagemaker_jobs)" ]]; then
  content_hash="$(cat sagemaker_jobs/*.py sagemaker_jobs/mlcontract/*.py sagemaker_jobs/mlcontract/*.json sagemaker_jobs/requirements.txt | sha256sum | cut -c1-8)"
  CODE_VERSION="${CODE_VERSION}-dirty-${content_hash}"
  log "sagemaker_jobs/ has uncommitted changes: code version $CODE_VERSION"
fi
export MLPIPE_CODE_VERSION="$CODE_VERSION"
export MLPIPE_CODE_PREFIX="code/$CODE_VERSION"

rm -rf "$BUILD_DIR"
mkdir -p "$JOBS_BUILD_DIR"
job_files=()
for path in sagemaker_jobs/*.py sagemaker_jobs/requirements.txt; do
  job_files+=("$(basename "$path")")
done
cp "${job_files[@]/#/sagemaker_jobs/}" "$JOBS_BUILD_DIR/"
# The contract package every script imports (stdlib only) travels with them.
mkdir -p "$JOBS_BUILD_DIR/mlcontract"
cp sagemaker_jobs/mlcontract/*.py sagemaker_jobs/mlcontract/*.json "$JOBS_BUILD_DIR/mlcontract/"
job_files+=("mlcontract")
# Files at the archive root: SageMaker unpacks it into /opt/ml/code, installs
# requirements.txt and runs sagemaker_program from there.
tar -czf "$JOBS_BUILD_DIR/sourcedir.tar.gz" -C "$JOBS_BUILD_DIR" "${job_files[@]}"

# --- 2. the scikit-learn image ---------------------------------------------------------------
# SKLEARN_IMAGE_URI, when set, wins; otherwise the SageMaker SDK (v3: sagemaker.core, v2:
# sagemaker) resolves it offline from its bundled image tables.
if [[ -n "${SKLEARN_IMAGE_URI:-}" ]]; then
  log "scikit-learn image from SKLEARN_IMAGE_URI"
elif "$PYTHON" -c "import sagemaker" >/dev/null 2>&1; then
  log "looking up the scikit-learn $SKLEARN_FRAMEWORK_VERSION image with the SageMaker SDK"
  SKLEARN_IMAGE_URI="$(
    "$PYTHON" - "$REGION" "$SKLEARN_FRAMEWORK_VERSION" "$TRAINING_INSTANCE_TYPE" <<'PY'
import sys

region, version, instance_type = sys.argv[1:4]
try:
    from sagemaker.core import image_uris  # SageMaker Python SDK v3
except ImportError:
    from sagemaker import image_uris  # SageMaker Python SDK v2
print(
    image_uris.retrieve(
        "sklearn", region, version=version, py_version="py3", instance_type=instance_type
    )
)
PY
  )"
elif [[ "$PACKAGE_ONLY" == 1 ]]; then
  SKLEARN_IMAGE_URI="(not resolved: SageMaker SDK not installed and SKLEARN_IMAGE_URI unset)"
else
  die "install the SageMaker SDK (pip install -e '.[sagemaker]') or set SKLEARN_IMAGE_URI, e.g. 683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"
fi
export MLPIPE_SKLEARN_IMAGE_URI="$SKLEARN_IMAGE_URI"
log "image: $SKLEARN_IMAGE_URI"

# --- 3. the Chalice app merged with iac/template.yaml ------------------------------------------
# The API imports the same contract package: Chalice ships functions/vendor/ at the root of
# the Lambda bundle (the copy is build output, ignored by git).
rm -rf "$ROOT/functions/vendor/mlcontract"
mkdir -p "$ROOT/functions/vendor/mlcontract"
cp sagemaker_jobs/mlcontract/*.py sagemaker_jobs/mlcontract/*.json "$ROOT/functions/vendor/mlcontract/"
# The API aggregates endpoint metrics with the model server's own module (monitoring).
cp sagemaker_jobs/telemetry.py "$ROOT/functions/vendor/telemetry.py"
log "chalice package --stage $CHALICE_STAGE --merge-template ../iac/template.yaml ../build"
(cd "$ROOT/functions" && "$CHALICE" package --stage "$CHALICE_STAGE" \
  --merge-template ../iac/template.yaml ../build)
# A .yaml merge template makes Chalice write YAML.
TEMPLATE="$BUILD_DIR/sam.yaml"
[[ -f "$TEMPLATE" ]] || die "chalice package did not write $TEMPLATE"
# The wheels' compiled extensions without their debug symbols (about 10 MB): the bundle plus
# the AWS SDK for pandas layer must stay under Lambda's 250 MB unzipped (make package checks).
(cd "$ROOT" && "$PYTHON" -m iac.slim_bundle "$BUILD_DIR/deployment.zip")

if [[ "$PACKAGE_ONLY" == 1 ]]; then
  # cfn-lint on the SAM form reports nothing (not even an unknown runtime): lint the template
  # after the SAM transform, with the pinned cfn-lint (make lint does the same).
  log "cfn-lint on the SAM-transformed template"
  (cd "$ROOT" && PYTHONPATH="$ROOT:$ROOT/functions:$ROOT/sagemaker_jobs" "$PYTHON" -m iac.package_template --lint)
  log "package only: $TEMPLATE, $BUILD_DIR/deployment.zip, $JOBS_BUILD_DIR/"
  log "code prefix $MLPIPE_CODE_PREFIX, code version $MLPIPE_CODE_VERSION"
  exit 0
fi

[[ -n "${PANDAS_LAYER_ARN:-}" ]] ||
  die "set PANDAS_LAYER_ARN (AWS SDK for pandas, python3.11 x86_64, $REGION): https://aws-sdk-pandas.readthedocs.io/en/stable/layers.html"

ACCOUNT_ID="$(aws sts get-caller-identity --query Account --output text)"
log "account $ACCOUNT_ID, region $REGION, stack $STACK_NAME"

stack_output() {
  aws cloudformation describe-stacks --stack-name "$STACK_NAME" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text 2>/dev/null || true
}

upload_job_code() {
  local bucket="$1"
  log "uploading job code to s3://$bucket/$MLPIPE_CODE_PREFIX/"
  aws s3 cp --recursive --only-show-errors "$JOBS_BUILD_DIR/" "s3://$bucket/$MLPIPE_CODE_PREFIX/"
}

# --- 5 (update). upload the job code while the old functions still point at the old prefix --
BUCKET="$(stack_output ArtefactBucketName)"
uploaded=0
if [[ -n "$BUCKET" && "$BUCKET" != "None" ]]; then
  upload_job_code "$BUCKET"
  uploaded=1
fi

# --- 4. package and deploy ---------------------------------------------------------------------
PACKAGE_BUCKET="${PACKAGE_BUCKET:-mlpipe-deploy-$ACCOUNT_ID-$REGION}"
if ! aws s3api head-bucket --bucket "$PACKAGE_BUCKET" >/dev/null 2>&1; then
  log "creating the deployment bucket $PACKAGE_BUCKET"
  aws s3 mb "s3://$PACKAGE_BUCKET" --region "$REGION"
  aws s3api put-public-access-block --bucket "$PACKAGE_BUCKET" \
    --public-access-block-configuration \
    BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
fi

log "aws cloudformation package"
aws cloudformation package \
  --template-file "$TEMPLATE" \
  --s3-bucket "$PACKAGE_BUCKET" \
  --s3-prefix "$STACK_NAME" \
  --output-template-file "$BUILD_DIR/packaged.yaml"

params=(
  "SklearnImageUri=$MLPIPE_SKLEARN_IMAGE_URI"
  "CodePrefix=$MLPIPE_CODE_PREFIX"
  "CodeVersion=$MLPIPE_CODE_VERSION"
  "PandasLayerArn=$PANDAS_LAYER_ARN"
  "TrainingInstanceType=$TRAINING_INSTANCE_TYPE"
  "EndpointInstanceType=$ENDPOINT_INSTANCE_TYPE"
)

log "aws cloudformation deploy --stack-name $STACK_NAME"
aws cloudformation deploy \
  --template-file "$BUILD_DIR/packaged.yaml" \
  --stack-name "$STACK_NAME" \
  --s3-bucket "$PACKAGE_BUCKET" \
  --s3-prefix "$STACK_NAME" \
  --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND \
  --no-fail-on-empty-changeset \
  --parameter-overrides "${params[@]}"

# --- 5 (first deploy). the bucket exists now -------------------------------------------------
if [[ "$uploaded" == 0 ]]; then
  BUCKET="$(stack_output ArtefactBucketName)"
  [[ -n "$BUCKET" && "$BUCKET" != "None" ]] || die "the stack has no ArtefactBucketName output"
  upload_job_code "$BUCKET"
fi

aws cloudformation describe-stacks --stack-name "$STACK_NAME" \
  --query "Stacks[0].Outputs[].[OutputKey,OutputValue]" --output table
log "API: $(stack_output EndpointURL)"

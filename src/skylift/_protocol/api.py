"""The wire contract: every RPC method, who may call it, and the shape of its params and result.

This module is the single source of truth shared by the SDK (`skylift._client`), the control plane
(`skylift.server`), the worker agent (`skylift.worker`) and the container runtime
(`skylift._runtime`). All values are msgpack-native (dict, list, str, int, float, bool, None,
bytes). Pickled user data (arguments, results, exceptions) travels as opaque `bytes` the control
plane never unpickles.

Roles (fixed by `hello`):
  client     SDK in a user program or the CLI (admin token)
  container  the runtime inside one container (per-container token); may also call many CLIENT
             methods as a workload of its workspace (call functions, use Dicts, run apps of its own),
             never as an operator; the data-plane methods only for inputs leased to it
  worker     a worker agent (the worker token `worker_token`, or the admin token); only the tasks,
             execs and builds placed on it
Who may call each method is server/access.py's RULES, checked before any handler (docs/security.md).
Before hello a connection may send one frame of at most 64 KiB, within 10 s.

Object ids are prefixed like Modal's: ap- app, fu- function, fc- function call, in- input,
ta- task (container), im- image, wo- worker, en- environment, sb- sandbox, sp- sandbox process.

-----------------------------------------------------------------------------------------------
hello {token, role, version, task_id?, worker_id?} -> {server_version, server_id}

== client methods ==============================================================================
server.status {} -> {version, pid, started_at, url, workers: [WorkerInfo], apps_running}
server.shutdown {} -> {}                      (admin; stops the embedded platform)

app.create {name?, environment, state: "ephemeral"|"detached", description?, strict_containers?: bool}
           -> {app_id}                        an app a container creates is owned by its task
app.deploy_begin {name, environment, strict_containers?: bool} -> {app_id}     get-or-create the deployed
                                              app by name (strict_containers, when sent, sets the mode)
app.publish {app_id, state: "ephemeral"|"detached"|"deployed", function_ids: {tag: fu-id},
             tag?: str, commit_info?: str} -> {version: int, app_id}
app.heartbeat {app_id} -> {}                  ephemeral apps die ~APP_HEARTBEAT_TIMEOUT after the last one
app.disconnect {app_id, reason?} -> {}        ends an ephemeral app: stops its containers, fails pending inputs
app.stop {app_id?, name?, environment} -> {app_id}
app.list {environment} -> {apps: [{app_id, name, state, environment, created_at, stopped_at,
                                    version, n_containers, description}]}
app.history {name, environment} -> {versions: [{version, deployed_at, tag, commit_info, function_tags}]}
app.lookup {name, environment} -> {app_id, state, function_tags: [str]}     NotFound if absent/stopped
app.logs {app_id, after_seq: int, timeout: float, limit?: int}
     -> {entries: [LogEntry], next_seq: int, app_state: str, done: bool}   long-polls up to timeout for new
     entries; done: the last of the app's lines (stopped, every container exited, its lines stored)

app.info {app_id} -> {app_id, name, description, state, environment, created_at, stopped_at, version,
          deployed_at, function_ids: {tag: fu-id}}       App.info(); a stopped app has no function_ids
function.info {function_id} -> {function_id, app_id, app_name, tag, definition, web_urls?}
                                              Function.from_id / Function.info
function.create {app_id, definition: FunctionDefinition} -> {function_id, web_urls?: {key: url}}
     For deployed apps the server reuses the id of the function with the same tag (stable from_name).
     web_urls: the gateway URL of each web endpoint (key "" for a function, the method name for a
     class); invalid labels and labels another deployed app holds are refused (docs/web.md).
function.get {app_name, tag, environment, version?: int} -> {function_id, definition: FunctionDefinition,
                                                             web_urls?: {key: url}}
function.stats {function_id} -> {backlog, num_total_runners, num_running_inputs, input_headroom}
function.update_autoscaler {function_id, min_containers?, max_containers?, buffer_containers?,
                            scaledown_window?} -> {autoscaler: AutoscalerSettings}

image.build {image: ImageDefinition, force_build?: bool} -> {image_id, status}
     Registers the image (id = hash of its layer chain) and starts building it on a worker if it is
     not built. status: "ready" | "building" | "failed".
image.status {image_id, log_offset: int, timeout: float}
     -> {status, logs: [str], next_offset, error?: str}           long-polls while building

blob.missing {hashes: [sha256hex]} -> {missing: [sha256hex]}
blob.put {sha256, data: bytes} -> {}          server verifies the hash
blob.get {sha256} -> {data: bytes}

call.start {function_id, params?: bytes, inputs: [InputItem], invocation: "sync"|"async",
            kind: "unary"|"map"|"generator", parent_input_id?: str, more_inputs?: bool,
            idempotency_key?: str}
     -> {call_id, input_ids: [str]}
     A repeat with the same idempotency_key (≤128 chars, random per call) answers the first call's
     call_id and input_ids and creates nothing (docs/exactly-once.md): kept with the call for
     "async", in memory for 2×RETRY_WINDOW_SECONDS for "sync".
     "async" (spawn, spawn_map) inputs are durable before the answer. `params` is the deterministic
     encoding of Cls parameters (each distinct value is its own container pool). With
     more_inputs=True (map), further inputs follow with call.put_inputs and the call is open until
     call.close_inputs.
call.put_inputs {call_id, inputs: [InputItem], start_index: int} -> {input_ids}
     A batch's key is (call, start_index): inputs already received at those indices are not added
     again, their input_ids are answered.
call.close_inputs {call_id, total: int} -> {}
call.get_outputs {call_id, timeout: float, max?: int, clear: bool, start_index?: int,
                  idempotency_key?: str}
     -> {outputs: [Output], done: bool}
     With clear=True and the key of the previous poll of this call, that poll's outputs are
     answered again (its answer was lost); a new key acknowledges them.
     Long-polls until at least one output is available, then returns every ready one (up to max).
     clear=True (sync .remote/.map) deletes returned outputs; clear=False (FunctionCall.get) keeps
     them for OUTPUT_TTL. done=True when every input of a closed call has returned.
call.run {function_id, params?, input: InputItem, timeout: float, parent_input_id?, idempotency_key?}
     -> {call_id, output?: Output}          fast path for .remote(): start + wait in one round trip;
                                           no `output` if `timeout` passed first (keep polling)
call.get_gen_items {call_id, start: int, timeout: float}
     -> {items: [bytes], next: int, done: bool, output?: Output}     generator calls: streamed items;
                                           when done, `output` is the final status (failure etc.)
call.cancel {call_id, terminate_containers?: bool} -> {}
call.info {call_id} -> {call_id, function_id, state, num_inputs, created_at}   NotFound / expired

== web endpoints and schedules (docs/web.md) =====================================================
web.list {} -> {gateway_url, endpoints: [{label, function_id, method, url, requires_proxy_auth}]}
proxy_token.create {} -> {token_id: "wk-…", token_secret: "ws-…"}     (admin; the secret is shown once)
proxy_token.list {} -> {tokens: [{token_id, created_at}]}             (admin)
proxy_token.delete {token_id} -> {}                                   (admin)
schedule.list {environment, app_name?} -> {schedules: [{app_name, tag, function_id, schedule,
     description, next_run: wall ts | None (paused), last_run, paused}]}
schedule.pause {app_name, tag, environment} -> (a schedules entry)    survives restarts
schedule.resume {app_name, tag, environment} -> (a schedules entry)   from the next slot; no catch-up

== storage objects (clients and containers; docs/storage.md) ====================================
Objects are named per environment ([A-Za-z0-9._-], <= 64) or anonymous; kind is "secret",
"volume", "dict" or "queue"; ids st-, vo-, di-, qu-. Missing names are NotFound naming the fix.
object.get {kind, name, environment, create_if_missing?: bool, required_keys?: [str]}
     -> {object_id, created: bool}          secrets are never created here; required_keys checks names
object.ephemeral {kind, environment} -> {object_id}    anonymous; deleted when this connection ends
object.list {kind, environment} -> {objects: [{object_id, name, created_at, size}]}  size: entries,
                                           items, files or keys; never a secret's values
object.info {kind, object_id} -> {object_id, name, environment, created_at, ephemeral}
object.rename {kind, name, new_name, environment} -> {object_id}   same id and contents; CONFLICT if taken
object.delete {kind, name? | object_id?, environment, allow_missing?: bool} -> {}
secret.create {name?, environment, values: {KEY: str}, overwrite?: bool} -> {object_id}
     values are sealed (AES-256-GCM, key in the server's home) before they are stored; without a
     name the secret is anonymous and identical values give the same id. CONFLICT if the name exists.
secret.update {secret_id, values: {KEY: str}} -> {object_id}     Secret.update: merges into a named secret
dict.put {dict_id, items: [[key: bytes, value: bytes]], skip_if_exists?: bool} -> {written: int}
dict.get | dict.pop {dict_id, key: bytes} -> {found: bool, value?: bytes}
dict.contains {dict_id, key} -> {found}    dict.len {dict_id} -> {len}    dict.clear {dict_id} -> {}
dict.scan {dict_id, after: int, limit: int, values?: bool} -> {items: [[key, value?]], next: int, done}
     keys are the bytes of a deterministic pickle; insertion order; at most 10,000 items per put
queue.put {queue_id, partition?: str, values: [bytes], partition_ttl?: int, timeout?: float} -> {}
     waits up to timeout for room; RESOURCE_EXHAUSTED when the partition holds 5,000 items
queue.get {queue_id, partition?, n: int, timeout: float} -> {values: [bytes]}   long-polls, woken by put
queue.peek {queue_id, partition?, after: int, n, timeout} -> {items: [[seq, bytes]]}   no removal
queue.len {queue_id, partition?, total?: bool} -> {len}
queue.clear {queue_id, partition?, all?: bool} -> {}
     items <= 1 MiB, partition keys 1..64 bytes (None: the default partition); durable
volume.manifest {volume_id} -> {version, entries: [Entry]}
volume.commit {volume_id, puts: [Entry], deletes: [path], force?: bool} -> {version}
     last write wins per path; deletes are not recursive; every block must be uploaded first;
     force=False refuses to overwrite a file (CONFLICT)
volume.listdir {volume_id, path, recursive?} -> {entries: [[path, type, size, mtime]]}
volume.file {volume_id, path} -> {entry: Entry}
volume.remove {volume_id, path, recursive?} -> {version}
volume.copy {volume_id, srcs: [path], dst: path, recursive?} -> {version}
volume.write_blocks {blocks: [bytes]} -> {hashes: [sha256]}    many small blobs per round trip
volume.read_blocks {hashes: [sha256]} -> {blocks: [bytes]}     may return a prefix (64 MiB a call)

== web endpoints and schedules (docs/web.md) =====================================================
web.list {} -> {gateway_url, endpoints: [{label, function_id, method, url, requires_proxy_auth}]}
proxy_token.create {} -> {token_id: "wk-…", token_secret: "ws-…"}     (admin; the secret is shown once)
proxy_token.list {} -> {tokens: [{token_id, created_at}]}             (admin)
proxy_token.delete {token_id} -> {}                                   (admin)
schedule.list {environment, app_name?} -> {schedules: [{app_name, tag, function_id, schedule,
     description, next_run: wall ts | None (paused), last_run, paused}]}
schedule.pause {app_name, tag, environment} -> (a schedules entry)    survives restarts
schedule.resume {app_name, tag, environment} -> (a schedules entry)   from the next slot; no catch-up

task.list {environment, app_id?} -> {tasks: [TaskInfo]}          (admin) running containers
task.get {task_id} -> {task: TaskInfo + {profile: ColdStartProfile}}    (admin)
task.logs {task_id, after_seq: int, timeout: float, limit?: int}
     -> {entries: [LogEntry], next_seq: int, done: bool}  (admin) one container's lines of its app's
                                           log; long-polls; done=True once the container has exited
task.exec {task_id, argv: [str], timeout?: float} -> {exit_code, output: str, truncated: bool}
     (admin) relayed to the container's worker (exec_task); runs with the container's env and cwd
task.stop {task_id, kill?: bool} -> {}    (admin) drain and stop (or kill) one container

== sandboxes (docs/sandboxes.md) ===============================================================
Clients, and containers for their own app or apps they created. A sandbox (sb-) is one container
whose runtime runs `cmd` and the processes `exec` starts (sp-); the main process's id is the
sandbox's. Output and stdin carry byte offsets: a re-sent call adds nothing, a gap is INVALID.
sandbox.create {app_id, definition: FunctionDefinition (image_id, mounts, resources, env, secret_ids,
                volume_ids, cloud_bucket_mounts, block_network), cmd: [str], name?, tags?: {k: v},
                timeout: int (1..86400), idle_timeout?: int, workdir?} -> {sandbox_id, task_id}
     The app must be running; a name is unique among the app's running sandboxes (CONFLICT).
sandbox.get {sandbox_id} -> SandboxInfo         running or ended (kept an hour, the last 1,000)
sandbox.list {environment, app_id?, tags?: {k: v}} -> {sandboxes: [SandboxInfo]}   running, newest first
sandbox.from_name {app_name, name, environment} -> SandboxInfo                     running only
sandbox.set_tags {sandbox_id, tags} -> {}
sandbox.wait {sandbox_id, process_id?, timeout} -> {status, returncode}   long-polls while "running"
sandbox.read {sandbox_id, process_id?, stream: "stdout"|"stderr", offset, timeout}
     -> {data: bytes, offset, next_offset, eof}    long-polls until data or EOF; reading at X frees
     what is before X (a reader that lost an answer reads again from its offset)
sandbox.write_stdin {sandbox_id, process_id?, offset, data: bytes, eof: bool, timeout?} -> {next_offset}
     waits (up to timeout) while 16 MiB are unacknowledged by the container; RESOURCE_EXHAUSTED after
sandbox.exec {sandbox_id, argv, workdir?, env?, secret_ids?, timeout?, stdout/stderr: "pipe"|"devnull"}
     -> {process_id}
sandbox.terminate {sandbox_id} -> {status, returncode}
-- the sandbox's own container (its token is good for nothing else: access.SANDBOX_METHODS) --
sandbox.container_poll {acks: {process_id: stdin offset received}, timeout}
     -> {stdin: [{process_id, offset, data, eof}], execs: [{process_id, argv, workdir, env, timeout,
         stdout, stderr}], stop: bool}     long-poll; only processes named in acks get stdin
sandbox.put_output {process_id, stream, offset, data, eof, timeout} -> {accepted: bool}
     accepted=False: 16 MiB wait unread; send the same chunk again (the pipe waits meanwhile)
sandbox.process_exit {process_id, exit_code, timed_out?: bool} -> {}
SandboxInfo      {sandbox_id, app_id, name, tags, status, returncode, created_at, task_id}
  status: "running" | "exited" (returncode: the command's) | "timeout" (124) | "terminated" (137)

== container methods ===========================================================================
container.init {} -> {task_id, function_id, app_id, app_name, environment, definition,
                      params?: bytes, function_ids: {tag: fu-id}}        the container's own task
container.ready {profile?: StartProfile} -> {}           @enter hooks done; inputs may flow
container.init_failed {error: str, traceback: str} -> {}   import/@enter crashed; pending inputs fail
container.get_inputs {max: int, timeout: float}
     -> {inputs: [LeasedInput], stop: bool}
     Long-polls; returns up to `max` leased inputs. stop=True: drain, run @exit, exit 0.
container.put_outputs {outputs: [ContainerOutput], next?: {max: int, timeout: float}}
     -> {} | (with next) {inputs: [LeasedInput], stop: bool}
     With next, the container's next get_inputs rides on its outputs: settled first, then leased.
container.put_gen_items {input_id, attempt, start: int, items: [bytes]} -> {}
container.heartbeat {running_input_ids: [str]} -> {cancel_input_ids: [str], stop: bool}
     Renews the leases of running inputs.
container.web_send {input_id, messages: [AsgiMessage]} -> {closed: bool}
container.web_send {items: [{input_id, messages}]} -> {closed: [input_id]}
     The response of a web input (WebRequest) as ASGI messages: http.response.start/body,
     websocket.accept/send/close. The one-input form answers once the client's socket took the
     bytes (backpressure); the items form carries complete responses of many inputs, unthrottled.
     closed: the client went away (stop answering).
container.web_receive {input_id, timeout} -> {messages: [AsgiMessage]}
     Long-polls request-body chunks (http.request {body, more_body}) and WebSocket messages
     (websocket.receive {text|bytes}, websocket.disconnect {code}); http.disconnect when gone.

== worker methods ==============================================================================
worker.register {worker_id?, hostname, resources: {cpu, memory_mb, gpus: {type: count}},
                 labels: {k: v}, runtimes: [str], task_ids?: [str]} -> {worker_id}
     task_ids: every container the worker has now (starting or running); the control plane
     writes off the others it placed there (their inputs run elsewhere, docs/faults.md)
worker.poll {timeout: float} -> {commands: [WorkerCommand]}        long-poll
worker.report {events: [TaskEvent]} -> {}
worker.logs {entries: [{task_id, stream: "stdout"|"stderr"|"system", text, ts}]} -> {}
worker.image_progress {image_id, logs: [str], status?: "ready"|"failed", error?: str} -> {}
worker.exec_result {exec_id, exit_code?: int, output?: str, truncated?: bool, error?: str} -> {}
     the answer to an exec_task command

== shapes =====================================================================================
InputItem        {args: bytes, method?: str}   args = cloudpickle((args, kwargs)); method for Cls
LeasedInput      {input_id, call_id, index, attempt, args: bytes, method?: str, kind: str}
                 attempt is 1 for the first run and +1 per user retry; a redelivery (expired lease,
                 crashed container) keeps it. Echo it in ContainerOutput/put_gen_items.
Output           {index, input_id, status, data?: bytes, exc_type?, exc_message?, traceback?,
                  python_version?, library_versions?: {name: ver}}
ContainerOutput  {input_id, attempt, status, data?, exc_type?, exc_message?, traceback?,
                  python_version?, library_versions?}
  status: "success" | "failure" (user exception; data = pickled exception if picklable) |
          "timeout" | "terminated" (container died/cancelled) | "init_failure" | "internal_failure" |
          "expired" (only from call.get_outputs: a spawned call's results passed OUTPUT_TTL_SECONDS)
LogEntry         {seq, ts, task_id, function_tag, stream, text}
WorkerCommand    {op: "start_task", task: TaskSpec} | {op: "stop_task", task_id, kill: bool}
                 | {op: "build_image", image_id, image: ImageDefinition, secrets?: {secret_id: {KEY: value}}}
                 `secrets`: the values of the secrets its build steps name (never stored by the worker)
                 | {op: "exec_task", exec_id, task_id, argv: [str], timeout: float}
TaskSpec         {task_id, token, app_id, function_id, function_tag, image_id, server_url,
                  env: {k: v}, resources: {cpu, memory, gpu}, mounts: [Mount], definition,
                  image?: ImageDefinition, params?: bytes}
                 volumes?: [{mount_path, volume_id}], bucket_mounts?: [BucketMount]
                 `env` holds the function's secrets (decrypted), then its env=, then the platform's.
                 `image` lets a worker build an image it was not sent build_image for (it is
                 built before the container starts); without it such a task fails to start.
                 `params`: the pool's Cls parameters (a memory-snapshot template builds the
                 instance before any container of the pool exists).
TaskEvent        {task_id, state: "running" | "exited", exit_code?: int, signal?: int, message?: str,
                  cause?: str, profile?: WorkerStartProfile}
                 exit_code: 128+N when signal N ended it (`signal`: N); none when it never ran.
                 cause "oom": the container exceeded its memory limit; the inputs it was running
                 fail (user retries apply) with `message`, instead of being re-run elsewhere.
                 "stopped": the worker stopped it as the control plane asked; "worker_stopping":
                 the worker stopped it because the worker is shutting down; "start_error": the
                 worker could not start it (runtime, mounts); "image": its image can't be built.
                 A signal the platform didn't send (no cause) is an outside kill (docs/faults.md).

WorkerStartProfile {how: "process"|"fork", image_ms, start_ms, template_ms?, pid?, template_pid?,
                    note?}             durations in ms measured by the worker (template_ms: a memory-
                                       snapshot template was started for this container)
StartProfile     {how: "process"|"fork", boot_ms?, fork_ms?, connect_ms, import_ms?, snap_hooks_ms?,
                  enter_ms, snapshot?: {import_ms, snap_hooks_ms}}    measured by the container;
                 `snapshot`: what the template did once so that this forked container didn't
TaskInfo         {task_id, app_id, app_name, function_tag, state, worker_id, uptime, idle?,
                  running_inputs, served, start: "process"|"fork"|"", pid?, cold_start_ms?,
                  stop_reason}
ColdStartProfile {how, total_ms?, phases: [[label, ms]], saved: {import_ms?, snap_hooks_ms?},
                  worker: WorkerStartProfile, container: StartProfile, ready: bool,
                  first_input: bool}

FunctionDefinition {
  tag: str                       "f" or "Model" for a class service function
  module: str | None             importable module name (None when serialized)
  qualname: str                  name in the module
  serialized: bytes | None       cloudpickle of the function/class when serialized=True
  is_class: bool, methods: {name: {is_generator: bool}}
  is_generator: bool
  image_id: str
  mounts: [Mount]                user source (include_source), add_local_*(copy=False)
  resources: {cpu, memory, gpu, ephemeral_disk}
  timeout: int, startup_timeout: int | None
  retries: {max_retries, backoff_coefficient, initial_delay, max_delay} | None
  autoscaler: AutoscalerSettings
  concurrency: {max_inputs, target_inputs} | None
  batching: {max_batch_size, wait_ms} | None
  single_use_containers: bool
  schedule: {kind: "period"|"cron", ...} | None
  enable_memory_snapshot: bool, region, cloud, block_network: bool
  secret_ids: [str], volume_ids: {path: id}, env: {k: v}
  cloud_bucket_mounts: [{mount_path, bucket_name, endpoint_url, key_prefix, read_only,
                         requester_pays, force_path_style, secret_id}]
  web: WebConfig | None          a web endpoint (methods[name].web for a class's web methods)
  experimental_options: dict
}
WebConfig        {type: "function"|"asgi"|"wsgi"|"web_server", label: str | None, requires_proxy_auth: bool,
                  method?: str, docs?: bool (function), port?: int, startup_timeout?: float (web_server)}
WebRequest       the args of a web input: pickle(((request,), {})) with request =
                 {scope: ASGI scope (headers as [[bytes, bytes]]), body: bytes, more_body: bool};
                 a body over 1 MiB or chunked streams through container.web_receive
AsgiMessage      an ASGI message dict: msgpack-native (headers as [[bytes, bytes]])
AutoscalerSettings {min_containers: int, max_containers: int | None, buffer_containers: int,
                    scaledown_window: int}
Mount            {remote_path, files: [{path: relative, sha256, mode}]}   contents in blob store
Entry            [path: str (relative, normalised), type: 1 file | 2 directory, blocks: [sha256]
                  (one per 8 MiB), size: int, mode: int, mtime: int seconds]    a volume manifest row
BucketMount      a cloud_bucket_mounts item without secret_id, with credentials: {k: v} (decrypted)
ImageDefinition  {layers: [Layer]}    base first; a layer's id = hash(parent id, step, file hashes)
Layer            {step: str, args: dict, files: [{path, sha256, mode}], force_build: bool}
                 step is one of: debian_slim, pip_install, uv_pip_install, run_commands, env,
                 workdir, add_local_file, add_local_dir, apt_install, run_function, from_registry,
                 from_dockerfile
"""

from __future__ import annotations

PROTOCOL_VERSION = 1

ROLE_CLIENT = "client"
ROLE_CONTAINER = "container"
ROLE_WORKER = "worker"

# Heartbeats and leases. A container heartbeats every HEARTBEAT_INTERVAL; a leased input whose
# container missed LEASE_SECONDS of heartbeats is handed out again (at-least-once).
HEARTBEAT_INTERVAL = 5.0
LEASE_SECONDS = 30.0
APP_HEARTBEAT_INTERVAL = 5.0
APP_HEARTBEAT_TIMEOUT = 30.0

# Long-poll ceilings: a client never holds a request open longer than this, so proxies and
# restarts never strand it.
MAX_POLL_SECONDS = 55.0

# The SDK re-sends a call (same idempotency key) while the control plane is unreachable for up
# to this long, then raises (docs/exactly-once.md). Servers remember sync keys twice as long.
RETRY_WINDOW_SECONDS = 60.0

# Spawned calls' outputs are kept this long (Modal: 7 days).
OUTPUT_TTL_SECONDS = 7 * 24 * 3600

# Largest pickled argument or result (Modal documents 100 MB).
MAX_PAYLOAD_BYTES = 100 * 1024 * 1024

DEFAULT_ENVIRONMENT = "main"
DEFAULT_TIMEOUT = 300
DEFAULT_SCALEDOWN_WINDOW = 60

# Output statuses
STATUS_SUCCESS = "success"
STATUS_FAILURE = "failure"
STATUS_TIMEOUT = "timeout"
STATUS_TERMINATED = "terminated"
STATUS_INIT_FAILURE = "init_failure"
STATUS_INTERNAL_FAILURE = "internal_failure"
STATUS_EXPIRED = "expired"

# Environment variables handed to every container.
ENV_SERVER_URL = "SKYLIFT_SERVER_URL"
ENV_TASK_ID = "SKYLIFT_TASK_ID"
ENV_TASK_TOKEN = "SKYLIFT_TASK_TOKEN"
ENV_IS_REMOTE = "MODAL_IS_REMOTE"
ENV_EPHEMERAL_DISK_MB = "SKYLIFT_EPHEMERAL_DISK_MB"  # the size of a container's writable layer and /tmp

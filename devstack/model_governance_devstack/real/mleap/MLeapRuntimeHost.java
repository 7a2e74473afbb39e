// The mleap-spring-boot REST contract, served over the REAL MLeap runtime (mleap-runtime_2.12 0.20.0).
//
// The spring-boot server itself is not served by this machine's Maven registry, so this first-party host
// stands in for its thin HTTP layer only: every bundle load and every transform is MLeap's own code
// (BundleFile + loadMleapBundle, DefaultFrameReader/Writer), called the way mleap-executor calls it.
// Each behaviour cites the combust/mleap source file it follows (paths under combust/mleap, v0.25.2; the
// executor and spring-boot code is unchanged in substance since 0.20.0).
//
// Run: java -cp <classpath of pom.xml> MLeapRuntimeHost.java <port>   (single-file source launch), or
//      compiled once with javac and run as `java -cp <classes>:<classpath> MLeapRuntimeHost <port>`.
// Not served: the protobuf content type, POST /models/transform (the base64 envelope), streams and flows.

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.File;
import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import ml.combust.bundle.BundleFile;
import ml.combust.bundle.BundleFile$;
import ml.combust.bundle.dsl.Bundle;
import ml.combust.mleap.json.DefaultFrameReader;
import ml.combust.mleap.json.DefaultFrameWriter;
import ml.combust.mleap.runtime.MleapContext;
import ml.combust.mleap.runtime.MleapContext$;
import ml.combust.mleap.runtime.MleapSupport$;
import ml.combust.mleap.runtime.frame.DefaultLeapFrame;
import ml.combust.mleap.runtime.frame.Transformer;
import ml.combust.mleap.runtime.types.BundleTypeConverters$;
import spray.json.JsBoolean;
import spray.json.JsNumber;
import spray.json.JsObject;
import spray.json.JsString;
import spray.json.JsValue;
import spray.json.JsonParser$;
import spray.json.ParserInput$;

public class MLeapRuntimeHost {
    static final MleapContext CONTEXT = MleapContext$.MODULE$.defaultContext();
    // LocalTransformServiceActor.lookup: model name -> its BundleActor (here: a Model)
    static final Map<String, Model> MODELS = new ConcurrentHashMap<>();
    // MleapExecutor.loadThreadPool (4 threads); FileRepository/HttpRepository run on pools of 4 as well
    static final ExecutorService LOADS = Executors.newFixedThreadPool(4);
    // reference.conf: default-memory-timeout = 15 minutes
    static final long DEFAULT_MEMORY_TIMEOUT_MS = 15 * 60 * 1000L;
    static final Pattern MODEL_PATH = Pattern.compile("/models/([^/]+)(/meta|/transform)?");
    static final String JSON = "application/json;charset=UTF-8";
    // Not MLeap's: a pause before each load (ms), so that tests can reach a model while it loads
    static final long LOAD_DELAY_MS = Long.getLong("mleap.host.loadDelayMs", 0L);
    // Akka's context.stop is asynchronous: a stopped model's actor name stays taken until its parent has
    // processed the termination, so a POST /models right after the DELETE can answer 400 (not unique).
    // Usually well under a millisecond; the tests hold it longer (ms) to meet that 400 on every swap.
    static final long STOP_DELAY_MS = Long.getLong("mleap.host.stopDelayMs", 0L);
    static final Map<String, Long> STOPPING = new ConcurrentHashMap<>();  // name -> nanoTime its name frees

    /** One BundleActor (mleap-executor service/BundleActor.scala): the model, its load, its idle clock. */
    static final class Model {
        final String name, uri;
        final Long memoryTimeout, diskTimeout;
        final CompletableFuture<Bundle<Transformer>> bundle = new CompletableFuture<>();
        volatile long touched = System.nanoTime();

        Model(String name, String uri, Long memoryTimeout, Long diskTimeout) {
            this.name = name; this.uri = uri; this.memoryTimeout = memoryTimeout; this.diskTimeout = diskTimeout;
        }

        /** Any message to the actor restarts its receive timeout (context.setReceiveTimeout). */
        Model touch() { touched = System.nanoTime(); return this; }

        boolean idle() {
            long limit = memoryTimeout != null ? memoryTimeout : DEFAULT_MEMORY_TIMEOUT_MS;
            return System.nanoTime() - touched > TimeUnit.MILLISECONDS.toNanos(limit);
        }

        /** spring-boot TypeConverters.executorToPbModel, printed by scalapb-json4s (config always present). */
        String json() {
            StringBuilder config = new StringBuilder("{");
            if (memoryTimeout != null) config.append("\"memoryTimeout\":").append(memoryTimeout);
            if (diskTimeout != null) config.append(memoryTimeout != null ? "," : "").append("\"diskTimeout\":").append(diskTimeout);
            return "{\"name\":" + q(name) + ",\"uri\":" + q(uri) + ",\"config\":" + config + "}}";
        }
    }

    public static void main(String[] args) throws IOException {
        int port = Integer.parseInt(args[0]);
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 64);
        server.createContext("/", MLeapRuntimeHost::handle);
        server.setExecutor(Executors.newCachedThreadPool());  // /meta and transform block while a load runs
        server.start();
        // BundleActor.receiveTimeout: an idle model's actor stops, which unloads the model entirely
        Executors.newSingleThreadScheduledExecutor().scheduleWithFixedDelay(
            () -> MODELS.values().removeIf(Model::idle), 100, 100, TimeUnit.MILLISECONDS);
        System.out.println("MLeapRuntimeHost (MLeap runtime 0.20.0) listening on 127.0.0.1:" + port);
    }

    static void handle(HttpExchange ex) throws IOException {
        try {
            String method = ex.getRequestMethod(), path = ex.getRequestURI().getPath();
            if (path.equals("/actuator/health")) {
                if (!method.equals("GET")) { empty(ex, 405); return; }
                send(ex, 200, "{\"status\":\"UP\"}", "application/vnd.spring-boot.actuator.v3+json");
                return;
            }
            Matcher m = MODEL_PATH.matcher(path);
            boolean collection = path.equals("/models");
            if (!collection && !m.matches()) { springError(ex, 404, "Not Found"); return; }
            int timeout;  // every JsonScoringController endpoint: @RequestHeader("timeout") Int, default 60000
            try {
                String header = ex.getRequestHeaders().getFirst("timeout");
                timeout = header == null ? 60000 : Integer.parseInt(header.trim());
            } catch (NumberFormatException e) { empty(ex, 400); return; }  // TypeMismatchException -> 400
            if (collection) {
                if (method.equals("POST")) loadModel(ex); else empty(ex, 405);
                return;
            }
            String name = m.group(1), sub = m.group(2) == null ? "" : m.group(2);
            if (sub.isEmpty() && method.equals("GET")) getModel(ex, name);
            else if (sub.isEmpty() && method.equals("DELETE")) unloadModel(ex, name);
            else if (sub.equals("/meta") && method.equals("GET")) getMeta(ex, name, timeout);
            else if (sub.equals("/transform") && method.equals("POST")) transform(ex, name, timeout);
            else empty(ex, 405);  // GlobalExceptionHandler: HttpRequestMethodNotSupportedException
        } catch (Throwable t) {
            t.printStackTrace();
            springError(ex, 500, "Internal Server Error");
        } finally {
            ex.close();
        }
    }

    // -- JsonScoringController.scala -------------------------------------------------------------------
    /** POST /models: 202 with the model as soon as its actor exists; the load runs on (BundleActor.maybeLoad). */
    static void loadModel(HttpExchange ex) throws IOException {
        if (!isJson(ex)) { empty(ex, 415); return; }  // consumes = application/json
        String name, uri;
        Long memoryTimeout = null, diskTimeout = null;
        try {  // scalapb-json4s Parser: a malformed body is a JsonFormatException -> 400 (GlobalExceptionHandler)
            JsObject body = (JsObject) JsonParser$.MODULE$.apply(ParserInput$.MODULE$.apply(readBody(ex)));
            for (String key : keys(body))
                if (!key.matches("modelName|model_name|uri|config|force")) throw new IllegalArgumentException(key);
            name = string(body, "modelName", string(body, "model_name", ""));
            uri = string(body, "uri", "");
            JsValue config = field(body, "config");
            if (config != null) {
                JsObject c = (JsObject) config;
                memoryTimeout = number(c, "memoryTimeout");
                diskTimeout = number(c, "diskTimeout");
            }
            JsValue force = field(body, "force");  // accepted, and ignored by the executor
            if (force != null && !(force instanceof JsBoolean)) throw new IllegalArgumentException("force");
        } catch (RuntimeException e) { empty(ex, 400); return; }
        URI.create(uri);  // TypeConverters.pbToExecutorLoadModelRequest; a bad URI fails unmapped -> 500
        Model model = new Model(name, uri, memoryTimeout, diskTimeout);
        // LocalTransformServiceActor.loadModel: context.actorOf(..., modelName) throws InvalidActorNameException
        // for a name already taken (loading or loaded) or not a valid actor name -> 400 empty
        Long frees = STOPPING.get(name);
        if (frees != null && System.nanoTime() - frees >= 0) STOPPING.remove(name, frees);
        else if (frees != null) { empty(ex, 400); return; }  // the stopping actor still holds the name
        if (!validActorName(name) || MODELS.putIfAbsent(name, model) != null) { empty(ex, 400); return; }
        LOADS.execute(() -> {
            try {
                Thread.sleep(LOAD_DELAY_MS);
                model.bundle.complete(load(URI.create(uri)));
            } catch (Throwable t) {  // BundleActor.loaded(Failure): waiting requests fail, the actor stops
                System.out.println("Cannot load bundle " + uri + " because: " + t);
                MODELS.remove(name, model);
                model.bundle.completeExceptionally(t);
            }
            model.touch();  // the Loaded message piped to the actor restarts its receive timeout
        });
        send(ex, 202, model.json(), JSON);
    }

    static void getModel(HttpExchange ex, String name) throws IOException {
        Model model = MODELS.get(name);  // answered by the actor at once, even while it loads
        if (model == null) { empty(ex, 404); return; }  // NotFoundException -> 404
        send(ex, 200, model.touch().json(), JSON);
    }

    static void unloadModel(HttpExchange ex, String name) throws IOException {
        if (!isJson(ex)) { empty(ex, 415); return; }  // @DeleteMapping(consumes = application/json)
        Model model = MODELS.remove(name);  // BundleActor.unloadModel: answers the model, then stops
        if (model == null) { empty(ex, 404); return; }
        if (STOP_DELAY_MS > 0) STOPPING.put(name, System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(STOP_DELAY_MS));
        send(ex, 200, model.json(), JSON);
    }

    /** GET /models/{name}/meta: held until the load ends (BundleActor buffers it). */
    static void getMeta(HttpExchange ex, String name, int timeout) throws IOException {
        Model model = MODELS.get(name);
        if (model == null) { empty(ex, 404); return; }
        Bundle<Transformer> bundle;
        try {
            bundle = model.touch().bundle.get(timeout, TimeUnit.MILLISECONDS);
        } catch (java.util.concurrent.TimeoutException e) {
            empty(ex, 500); return;  // AskTimeoutException -> executor TimeoutException -> 500 empty
        } catch (ExecutionException | InterruptedException e) {
            // the load failure, wrapped in ExecutorException (LocalTransformService.wrapExceptions): no handler
            // maps it, so Spring Boot answers its default error JSON
            String cause = message(new ExecutorException(e.getCause()));
            System.out.println("GET " + ex.getRequestURI() + ": " + cause);
            // not in the real answer (the server only logs it): the load error, for tests and for humans
            ex.getResponseHeaders().set("X-MLeap-Load-Error", cause.replaceAll("[\\r\\n]+", " "));
            springError(ex, 500, "Internal Server Error"); return;
        }
        ml.bundle.Bundle info = bundle.info().asBundle();  // TypeConverters.executorToPbBundleMeta
        String json = "{\"bundle\":{\"uid\":" + q(info.uid()) + ",\"name\":" + q(info.name()) + ",\"format\":"
            + q(info.format().name()) + ",\"version\":" + q(info.version()) + ",\"timestamp\":" + q(info.timestamp())
            + "},\"inputSchema\":" + schema(bundle.root().inputSchema())
            + ",\"outputSchema\":" + schema(bundle.root().outputSchema()) + "}";
        send(ex, 200, json, JSON);
    }

    // -- LeapFrameScoringController.scala: POST /models/{name}/transform, application/json ------------------
    /** Every failure answers 200 {"status":"STATUS_ERROR","error":ExceptionUtils.getMessage,"backtrace":...}. */
    static void transform(HttpExchange ex, String name, int timeout) throws IOException {
        if (!isJson(ex)) { empty(ex, 415); return; }  // (the protobuf variant is not served here)
        scala.util.Try<DefaultLeapFrame> read = new DefaultFrameReader().fromBytes(readBody(ex), StandardCharsets.UTF_8);
        if (read.isFailure()) { send(ex, 200, error(read.failed().get()), JSON); return; }
        Model model = MODELS.get(name);
        if (model == null) {  // LocalTransformServiceActor.handleModelRequest
            send(ex, 200, error(new NotFoundException("no model with name " + name)), JSON); return;
        }
        Bundle<Transformer> bundle;
        try {
            bundle = model.touch().bundle.get(timeout, TimeUnit.MILLISECONDS);
        } catch (java.util.concurrent.TimeoutException e) {
            send(ex, 200, error(new TimeoutException("Ask timed out on [" + name + "] after [" + timeout + " ms]")), JSON);
            return;
        } catch (ExecutionException | InterruptedException e) {
            send(ex, 200, error(new ExecutorException(e.getCause())), JSON); return;
        }
        // Transform.scala ExecuteTransform: the transformer's own failure is answered unwrapped
        scala.util.Try<DefaultLeapFrame> scored = bundle.root().transform(read.get());
        if (scored.isFailure()) { send(ex, 200, error(scored.failed().get()), JSON); return; }
        byte[] out = (byte[]) new DefaultFrameWriter(scored.get()).toBytes(StandardCharsets.UTF_8).get();
        send(ex, 200, new String(out, StandardCharsets.UTF_8), JSON);
    }

    // -- loading: repository/*.scala and RepositoryBundleLoader.scala ------------------------------------
    static Bundle<Transformer> load(URI uri) throws Exception {
        Path path = download(uri);
        // RepositoryBundleLoader: Using(BundleFile(path.toFile)) { bf => bf.loadMleapBundle() }.flatten
        // (bundle-ml BundleFile.scala: a name ending in ".zip" opens as a zip file system, any other as a folder)
        try (BundleFile file = BundleFile$.MODULE$.apply(path.toFile())) {
            return MleapSupport$.MODULE$.MleapBundleFileOps(file).loadMleapBundle(CONTEXT).get();
        }
    }

    /** MultiRepository: the first repository that handles the URI's scheme (reference.conf: file, then http). */
    static Path download(URI uri) throws Exception {
        String scheme = uri.getScheme();
        if ("file".equals(scheme)) {  // FileRepository (move = false): the file itself
            if (uri.getPath().isEmpty()) throw new BundleException("file path cannot be empty");  // NPE if opaque
            Path local = new File(uri.getPath()).toPath();
            if (!Files.exists(local)) throw new BundleException("file does not exist " + local);
            return local;
        }
        if ("http".equals(scheme) || "https".equals(scheme)) {  // HttpRepository, verbatim: createTempFile
            Path tmpFile = Files.createTempFile("mleap", ".bundle.zip");  // makes the file, so the copy below
            Files.copy(uri.toURL().openStream(), tmpFile);  // always throws FileAlreadyExistsException (#513)
            return tmpFile;
        }
        throw new BundleException("could not find a repository to download the bundle file");
    }

    // -- JSON ----------------------------------------------------------------------------------------------
    /** ml.bundle.Schema as scalapb-json4s prints it (includingDefaultValueFields), via BundleTypeConverters. */
    static String schema(ml.combust.mleap.core.types.StructType struct) {
        StringBuilder out = new StringBuilder("{\"fields\":[");
        scala.collection.Iterator<ml.bundle.Field> fields = BundleTypeConverters$.MODULE$.mleapToBundleSchema(struct).fields().iterator();
        while (fields.hasNext()) {
            ml.bundle.Field field = fields.next();
            ml.bundle.DataType type = field.getDataType();
            ml.bundle.DataShape shape = type.getShape();
            out.append("{\"name\":").append(q(field.name())).append(",\"dataType\":{\"base\":").append(q(type.base().name()))
               .append(",\"shape\":{\"base\":").append(q(shape.base().name())).append(",\"isNullable\":").append(shape.isNullable());
            if (shape.tensorShape().isDefined()) {  // an unset message is never printed
                out.append(",\"tensorShape\":{\"dimensions\":[");
                scala.collection.Iterator<ml.bundle.TensorDimension> dims = shape.getTensorShape().dimensions().iterator();
                while (dims.hasNext()) {
                    ml.bundle.TensorDimension d = dims.next();
                    out.append("{\"size\":").append(d.size()).append(",\"name\":").append(q(d.name())).append('}');
                    if (dims.hasNext()) out.append(',');
                }
                out.append("]}");
            }
            out.append("}}}");
            if (fields.hasNext()) out.append(',');
        }
        return out.append("]}").toString();
    }

    /** ErrorTransformResponse: commons-lang3 ExceptionUtils.getMessage ("ShortClass: message") and getStackTrace. */
    static String error(Throwable t) {
        StringWriter trace = new StringWriter();
        t.printStackTrace(new PrintWriter(trace, true));
        return "{\"status\":\"STATUS_ERROR\",\"error\":" + q(message(t)) + ",\"backtrace\":" + q(trace.toString()) + "}";
    }

    static String message(Throwable t) {  // ClassUtils.getShortClassName: no package, '$' shown as '.'
        String cls = t.getClass().getName();
        return cls.substring(cls.lastIndexOf('.') + 1).replace('$', '.') + ": " + (t.getMessage() == null ? "" : t.getMessage());
    }

    static String q(String s) { return new JsString(s == null ? "" : s).compactPrint(); }

    static java.util.List<String> keys(JsObject o) {
        java.util.List<String> out = new java.util.ArrayList<>();
        scala.collection.Iterator<String> it = o.fields().keysIterator();
        while (it.hasNext()) out.add(it.next());
        return out;
    }

    static JsValue field(JsObject o, String key) {
        scala.Option<JsValue> v = o.fields().get(key);
        return v.isDefined() ? v.get() : null;
    }

    static String string(JsObject o, String key, String otherwise) {
        JsValue v = field(o, key);
        return v == null ? otherwise : ((JsString) v).value();
    }

    static Long number(JsObject o, String key) {  // Int64Value: a number, or a string of one
        JsValue v = field(o, key);
        if (v == null) return null;
        return v instanceof JsString ? Long.valueOf(((JsString) v).value()) : ((JsNumber) v).value().longValue();
    }

    /** akka ActorPath.isValidPathElement: the rules for a model's name. */
    static boolean validActorName(String name) {
        return !name.isEmpty() && name.charAt(0) != '$' && name.matches("([-\\w:@&=+,.!~*'_;$]|%[0-9a-fA-F]{2})+");
    }

    // -- HTTP ----------------------------------------------------------------------------------------------
    /** Spring's consumes check: application/json, with no charset or UTF-8. */
    static boolean isJson(HttpExchange ex) {
        String type = ex.getRequestHeaders().getFirst("Content-Type");
        if (type == null) return false;
        String[] parts = type.toLowerCase().split(";");
        for (int i = 1; i < parts.length; i++)
            if (parts[i].trim().startsWith("charset=") && !parts[i].trim().equals("charset=utf-8")) return false;
        return parts[0].trim().equals("application/json");
    }

    static byte[] readBody(HttpExchange ex) throws IOException {
        return ex.getRequestBody().readAllBytes();  // what is left of it: empty once read
    }

    static void empty(HttpExchange ex, int status) throws IOException {
        readBody(ex);
        ex.sendResponseHeaders(status, -1);
    }

    /** Spring Boot's BasicErrorController body for an exception no handler maps. */
    static void springError(HttpExchange ex, int status, String reason) throws IOException {
        String when = OffsetDateTime.now(ZoneOffset.UTC).format(DateTimeFormatter.ISO_OFFSET_DATE_TIME);
        send(ex, status, "{\"timestamp\":" + q(when) + ",\"status\":" + status + ",\"error\":" + q(reason)
            + ",\"path\":" + q(ex.getRequestURI().getPath()) + "}", "application/json");
    }

    static void send(HttpExchange ex, int status, String body, String type) throws IOException {
        readBody(ex);
        byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
        ex.getResponseHeaders().set("Content-Type", type);
        ex.sendResponseHeaders(status, bytes.length);
        try (OutputStream out = ex.getResponseBody()) { out.write(bytes); }
    }
}

// mleap-executor error/*.scala: the classes whose short names the answers show
class ExecutorException extends RuntimeException {
    ExecutorException(String message) { super(message); }
    ExecutorException(Throwable cause) { super(cause.getMessage(), cause); }
}

class NotFoundException extends ExecutorException {
    NotFoundException(String message) { super(message); }
}

class TimeoutException extends ExecutorException {
    TimeoutException(String message) { super(message); }
}

class BundleException extends RuntimeException {
    BundleException(String message) { super(message); }
}

// A real HDFS (Hadoop's MiniDFSCluster: NameNode(s) + one DataNode in this JVM) for the model-governance tests.
//
// Run without a build step (single-file source launch):
//   java -cp "$(cat classpath.txt)" HdfsLauncher.java --base-dir DIR [--nn-port 8020] [--http-port 9870]
//   java -cp ... HdfsLauncher.java --base-dir DIR --ha --nn-ports 8020,8021 --http-ports 9870,9870 --hosts 127.0.0.1,127.0.0.2
//
// Prints one JSON line on stdout when ready ({"ready":true,...}), then reads one command per line from stdin
// and answers one JSON line each:
//   status | failover | transition-to-active N | transition-to-standby N | shutdown-namenode N |
//   restart-namenode N | stop-datanode | restart-datanode | quit
// It exits when stdin closes, so a parent that dies never leaves this JVM behind.
// Hadoop's own logging goes to stderr (slf4j-simple; level from -Dorg.slf4j.simpleLogger.defaultLogLevel).

import java.io.BufferedReader;
import java.io.File;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.apache.hadoop.hdfs.MiniDFSNNTopology;
import org.apache.hadoop.hdfs.server.datanode.DataNode;
import org.apache.hadoop.hdfs.server.namenode.NameNode;
import org.apache.hadoop.util.VersionInfo;

public class HdfsLauncher {
    static final String NAMESERVICE = "ns1";

    static PrintStream out;            // the protocol channel (the real stdout)
    static MiniDFSCluster cluster;
    static boolean ha;
    static int numNN;
    static String[] hosts;
    static int[] rpcPorts, httpPorts;
    static boolean[] nnUp;
    static MiniDFSCluster.DataNodeProperties stoppedDataNode;

    public static void main(String[] args) throws Exception {
        // Keep stdout for the protocol only: anything Hadoop prints goes to stderr.
        out = new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), true, StandardCharsets.UTF_8);
        System.setOut(System.err);

        String baseDir = null;
        String nnPorts = "8020", httpPortsArg = "9870", hostsArg = null;
        int dnHttpPort = 0;
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--base-dir": baseDir = args[++i]; break;
                case "--nn-port": case "--nn-ports": nnPorts = args[++i]; break;
                case "--http-port": case "--http-ports": httpPortsArg = args[++i]; break;
                case "--hosts": case "--host": hostsArg = args[++i]; break;
                case "--datanode-http-port": dnHttpPort = Integer.parseInt(args[++i]); break;
                case "--ha": ha = true; break;
                default: fail("unknown argument " + args[i]);
            }
        }
        if (baseDir == null) fail("--base-dir is required");
        numNN = ha ? 2 : 1;
        rpcPorts = ports(nnPorts, ha ? "8020,8021" : "8020");
        httpPorts = ports(httpPortsArg, ha ? "9870,9871" : "9870");
        hosts = hostsArg == null ? new String[]{"127.0.0.1", "127.0.0.1"} : hostsArg.split(",");
        if (hosts.length == 1) hosts = new String[]{hosts[0], hosts[0]};
        if (rpcPorts.length != numNN || httpPorts.length != numNN) fail("give " + numNN + " port(s) to --nn-ports/--http-ports");
        nnUp = new boolean[numNN];

        long t0 = System.nanoTime();
        File base = new File(baseDir).getAbsoluteFile();
        base.mkdirs();
        Configuration conf = new Configuration();
        conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, base.getPath());
        conf.setBoolean("dfs.permissions.enabled", false);
        conf.setBoolean("dfs.webhdfs.enabled", true);
        conf.setInt("dfs.replication", 1);
        conf.setInt("dfs.ha.tail-edits.period", 1);           // a standby catches up within a second
        conf.setLong("dfs.heartbeat.interval", 1);
        conf.setInt("dfs.namenode.heartbeat.recheck-interval", 5000);
        conf.setInt("dfs.client.retry.window.base", 50);
        conf.set("hadoop.security.authentication", "simple");
        if (dnHttpPort > 0) conf.set("dfs.datanode.http.address", "127.0.0.1:" + dnHttpPort);

        MiniDFSCluster.Builder b = new MiniDFSCluster.Builder(conf).numDataNodes(1).format(true)
                .checkDataNodeAddrConfig(dnHttpPort > 0);
        if (ha) {
            // MiniDFSCluster writes 127.0.0.1:<port> for every NameNode address; a per-NameNode bind host puts the
            // HTTP server on another loopback address, so both NameNodes can share one HTTP port (as the Airflow
            // WebHDFS hook expects: several hosts, one port).
            MiniDFSNNTopology.NSConf ns = new MiniDFSNNTopology.NSConf(NAMESERVICE);
            for (int i = 0; i < numNN; i++) {
                ns.addNN(new MiniDFSNNTopology.NNConf("nn" + i).setIpcPort(rpcPorts[i]).setHttpPort(httpPorts[i]));
                conf.set("dfs.namenode.http-bind-host." + NAMESERVICE + ".nn" + i, hosts[i]);
            }
            b.nnTopology(new MiniDFSNNTopology().addNameservice(ns));
        } else {
            b.nameNodePort(rpcPorts[0]).nameNodeHttpPort(httpPorts[0]);
            if (!hosts[0].equals("127.0.0.1")) conf.set("dfs.namenode.http-bind-host", hosts[0]);
        }
        try {
            cluster = b.build();
            if (ha) cluster.transitionToActive(0);
            cluster.waitActive();
            for (int i = 0; i < numNN; i++) nnUp[i] = true;
        } catch (Throwable e) {
            e.printStackTrace();
            out.println("{\"ready\":false,\"error\":" + q(e.toString()) + "}");
            if (cluster != null) try { cluster.shutdown(); } catch (Throwable ignored) { }
            halt(1);
        }

        Runtime.getRuntime().addShutdownHook(new Thread(HdfsLauncher::stopCluster, "hdfs-launcher-shutdown"));
        Map<String, Object> ready = new LinkedHashMap<>();
        ready.put("ready", true);
        ready.put("hadoop_version", VersionInfo.getVersion());
        ready.put("ha", ha);
        if (ha) ready.put("nameservice", NAMESERVICE);
        ready.put("startup_ms", (System.nanoTime() - t0) / 1_000_000);
        ready.put("pid", ProcessHandle.current().pid());
        putState(ready);
        out.println(json(ready));

        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            line = line.trim();
            if (line.isEmpty()) continue;
            String[] w = line.split("\\s+");
            Map<String, Object> r = new LinkedHashMap<>();
            r.put("cmd", line);
            try {
                if (w[0].equals("quit")) { r.put("ok", true); out.println(json(r)); break; }
                command(w);
                r.put("ok", true);
            } catch (Throwable e) {
                e.printStackTrace();
                r.put("ok", false);
                r.put("error", e.toString());
            }
            try { putState(r); } catch (Throwable e) { r.put("state_error", e.toString()); }
            out.println(json(r));
        }
        stopCluster();   // here rather than in the shutdown hook: Hadoop's own hooks refuse changes during JVM shutdown
        halt(0);
    }

    static void command(String[] w) throws Exception {
        switch (w[0]) {
            case "status": return;
            case "failover": {   // make nn1 active, nn0 standby (nn0 may be down already)
                requireHA();
                if (nnUp[0] && cluster.getNameNode(0).isActiveState()) cluster.transitionToStandby(0);
                cluster.transitionToActive(1);
                return;
            }
            case "failback": {
                requireHA();
                if (nnUp[1] && cluster.getNameNode(1).isActiveState()) cluster.transitionToStandby(1);
                cluster.transitionToActive(0);
                return;
            }
            case "transition-to-active": requireHA(); cluster.transitionToActive(nn(w)); return;
            case "transition-to-standby": requireHA(); cluster.transitionToStandby(nn(w)); return;
            case "shutdown-namenode": { int i = nn(w); cluster.shutdownNameNode(i); nnUp[i] = false; return; }
            case "restart-namenode": {
                int i = nn(w);
                // In HA the restarted NameNode comes back as standby; without HA it waits for the DataNode.
                cluster.restartNameNode(i, !ha);
                nnUp[i] = true;
                return;
            }
            case "stop-datanode": {
                if (stoppedDataNode != null) throw new IllegalStateException("the datanode is already stopped");
                stoppedDataNode = cluster.stopDataNode(0);
                return;
            }
            case "restart-datanode": {
                if (stoppedDataNode != null) {
                    cluster.restartDataNode(stoppedDataNode, true);   // same ports as before
                    stoppedDataNode = null;
                } else {
                    cluster.restartDataNode(0, true);
                }
                waitDataNodeRegistered();
                return;
            }
            default: throw new IllegalArgumentException("unknown command " + w[0]);
        }
    }

    static void waitDataNodeRegistered() throws Exception {
        long deadline = System.currentTimeMillis() + 60_000;
        while (System.currentTimeMillis() < deadline) {
            DataNode dn = cluster.getDataNodes().get(0);
            if (dn.isDatanodeFullyStarted()) { cluster.triggerHeartbeats(); return; }
            Thread.sleep(100);
        }
        throw new IllegalStateException("the datanode did not register within 60 s");
    }

    static void putState(Map<String, Object> m) {
        List<Object> nns = new ArrayList<>();
        for (int i = 0; i < numNN; i++) {
            Map<String, Object> n = new LinkedHashMap<>();
            n.put("id", "nn" + i);
            n.put("host", hosts[i]);
            n.put("rpc", rpcPorts[i]);
            n.put("http", httpPorts[i]);
            String state = "down";
            if (nnUp[i]) {
                NameNode nn = cluster.getNameNode(i);
                state = nn == null ? "down" : nn.isActiveState() ? "active" : nn.isStandbyState() ? "standby" : "other";
                if (nn != null) {
                    n.put("http", nn.getHttpAddress().getPort());
                    n.put("rpc", nn.getNameNodeAddress().getPort());
                }
            }
            n.put("state", state);
            nns.add(n);
        }
        m.put("namenodes", nns);
        if (stoppedDataNode != null || cluster.getDataNodes().isEmpty()) {
            m.put("datanode", "stopped");
        } else {
            DataNode dn = cluster.getDataNodes().get(0);
            m.put("datanode", "running");
            m.put("datanode_http", dn.getInfoPort());
            m.put("datanode_xfer", dn.getXferPort());
            m.put("datanode_ipc", dn.getIpcPort());
        }
    }

    static void requireHA() { if (!ha) throw new IllegalStateException("not an HA cluster (start with --ha)"); }

    static int nn(String[] w) {
        int i = w.length > 1 ? Integer.parseInt(w[1]) : 0;
        if (i < 0 || i >= numNN) throw new IllegalArgumentException("no namenode " + i);
        return i;
    }

    static int[] ports(String s, String dflt) {
        String[] p = (s == null ? dflt : s).split(",");
        int[] r = new int[p.length];
        for (int i = 0; i < p.length; i++) r[i] = Integer.parseInt(p[i].trim());
        return r;
    }

    static synchronized void stopCluster() {
        if (cluster == null) return;
        MiniDFSCluster c = cluster;
        cluster = null;
        try { c.shutdown(); } catch (Throwable e) { e.printStackTrace(); }
    }

    static void halt(int code) {
        // A watchdog: if shutting down hangs, the JVM still goes away.
        Thread t = new Thread(() -> {
            try { Thread.sleep(30_000); } catch (InterruptedException ignored) { }
            Runtime.getRuntime().halt(code == 0 ? 3 : code);
        }, "hdfs-launcher-watchdog");
        t.setDaemon(true);
        t.start();
        System.exit(code);
    }

    static void fail(String msg) {
        out.println("{\"ready\":false,\"error\":" + q(msg) + "}");
        System.exit(2);
    }

    // -- minimal JSON ---------------------------------------------------------------------------------------------
    @SuppressWarnings("unchecked")
    static String json(Object o) {
        if (o == null) return "null";
        if (o instanceof String) return q((String) o);
        if (o instanceof Number || o instanceof Boolean) return o.toString();
        StringBuilder sb = new StringBuilder();
        if (o instanceof Map) {
            sb.append('{');
            boolean first = true;
            for (Map.Entry<String, Object> e : ((Map<String, Object>) o).entrySet()) {
                if (!first) sb.append(',');
                first = false;
                sb.append(q(e.getKey())).append(':').append(json(e.getValue()));
            }
            return sb.append('}').toString();
        }
        if (o instanceof List) {
            sb.append('[');
            boolean first = true;
            for (Object v : (List<Object>) o) {
                if (!first) sb.append(',');
                first = false;
                sb.append(json(v));
            }
            return sb.append(']').toString();
        }
        return q(o.toString());
    }

    static String q(String s) {
        StringBuilder sb = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"': sb.append("\\\""); break;
                case '\\': sb.append("\\\\"); break;
                case '\n': sb.append("\\n"); break;
                case '\r': sb.append("\\r"); break;
                case '\t': sb.append("\\t"); break;
                default:
                    if (c < 0x20) sb.append(String.format("\\u%04x", (int) c)); else sb.append(c);
            }
        }
        return sb.append('"').toString();
    }
}

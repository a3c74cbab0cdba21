package deploycheck

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"gopkg.in/yaml.v3"
)

const root = "../../../.."

func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root), cli.WithOsEnv, cli.WithInterpolation(true))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	return p
}

func TestComposeFile(t *testing.T) {
	p := loadCompose(t)
	want := map[string][]string{ // service -> published ports
		"redpanda": {"19092"}, "console": {"8088"}, "redis": nil, "minio": {"9000", "9001"},
		"ingest-1": nil, "ingest-2": nil, "lb": {"8080"}, "deliver": nil, "archive": nil, "count": nil,
		"receiver": {"8081"}, "otel-collector": {"4317", "4318"}, "tempo": {"3200"},
		"prometheus": {"9090"}, "grafana": {"3000"}, "minio-init": nil,
	}
	for name, ports := range want {
		svc, ok := p.Services[name]
		if !ok {
			t.Errorf("service %s is missing", name)
			continue
		}
		var published []string
		for _, pc := range svc.Ports {
			published = append(published, pc.Published)
		}
		if strings.Join(published, ",") != strings.Join(ports, ",") {
			t.Errorf("%s publishes %v, want %v", name, published, ports)
		}
		switch name {
		case "minio-init", "otel-collector", "tempo":
			// a one-shot job, and two images without a shell to probe with
		default:
			if svc.HealthCheck == nil || len(svc.HealthCheck.Test) == 0 {
				t.Errorf("%s has no health check", name)
			}
		}
		if svc.Build != nil {
			df := filepath.Join(root, svc.Build.Dockerfile)
			if !filepath.IsAbs(svc.Build.Dockerfile) {
				df = filepath.Join(svc.Build.Context, svc.Build.Dockerfile)
			}
			if _, err := os.Stat(df); err != nil {
				t.Errorf("%s builds from %s, which does not exist", name, df)
			}
			pkg := svc.Build.Args["PKG"]
			if pkg == nil {
				t.Errorf("%s: build arg PKG missing", name)
			} else if _, err := os.Stat(filepath.Join(root, *pkg)); err != nil {
				t.Errorf("%s builds %s, which does not exist", name, *pkg)
			}
		}
	}
	for name := range p.Services {
		if _, ok := want[name]; !ok {
			t.Errorf("service %s is not described by this test (and the README)", name)
		}
	}
	// Everything Relay runs waits for its dependencies to be healthy.
	for _, name := range []string{"ingest-1", "ingest-2", "deliver", "archive", "count"} {
		dep, ok := p.Services[name].DependsOn["redpanda"]
		if !ok || dep.Condition != types.ServiceConditionHealthy {
			t.Errorf("%s does not wait for redpanda to be healthy", name)
		}
	}
	if dep := p.Services["archive"].DependsOn["minio-init"]; dep.Condition != types.ServiceConditionCompletedSuccessfully {
		t.Error("archive does not wait for the bucket to exist")
	}
	for _, name := range []string{"redpanda-data", "redis-data", "minio-data", "prometheus-data", "grafana-data"} {
		if _, ok := p.Volumes[name]; !ok {
			t.Errorf("named volume %s is missing", name)
		}
	}
	redis := strings.Join(p.Services["redis"].Command, " ")
	if !strings.Contains(redis, "--appendonly yes") || !strings.Contains(redis, "noeviction") {
		t.Errorf("redis runs without AOF or with eviction: %s", redis)
	}
	if !strings.Contains(redis, "--rdbcompression no") {
		t.Errorf("redis compresses its AOF rewrites (docs/configuration.md): %s", redis)
	}
	for _, path := range []string{"deploy/nginx/nginx.conf", "deploy/otel/collector.yaml", "deploy/tempo/tempo.yaml",
		"deploy/prometheus/prometheus.yml", "deploy/prometheus/alerts.yml",
		"deploy/grafana/provisioning/datasources/datasources.yaml", "deploy/grafana/provisioning/dashboards/dashboards.yaml",
		"deploy/grafana/dashboards/relay.json"} {
		if _, err := os.Stat(filepath.Join(root, path)); err != nil {
			t.Errorf("mounted config %s is missing", path)
		}
	}
}

// TestDockerComposeConfig runs `docker compose config` where a Docker CLI
// with the compose plugin is installed.
func TestDockerComposeConfig(t *testing.T) {
	if err := exec.Command("docker", "compose", "version").Run(); err != nil {
		t.Skip("no docker compose on this machine; TestComposeFile validated the file with compose-go")
	}
	cmd := exec.Command("docker", "compose", "-f", filepath.Join(root, "docker-compose.yml"), "config", "-q")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker compose config: %v\n%s", err, out)
	}
}

func checkQueries(t *testing.T, where string, exprs []string) {
	t.Helper()
	known := map[string]bool{}
	for _, n := range MetricNames {
		known[n] = true
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			known[n+suffix] = true
		}
	}
	re := regexp.MustCompile(`relay_[a-z0-9_]+`)
	for _, e := range exprs {
		for _, name := range re.FindAllString(e, -1) {
			if !known[name] && !strings.HasPrefix(name, "relay_kafka_") {
				t.Errorf("%s queries %s, which no Relay service exports", where, name)
			}
		}
	}
}

func TestAlertRulesQueryRealMetrics(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root, "deploy/prometheus/alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatal(err)
	}
	var exprs []string
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
			alerts[r.Alert] = true
		}
	}
	for _, a := range []string{"RelayDLQGrowing", "RelayConsumerLagHigh", "RelayDeliverySuccessLow", "RelayIngestRefusingWebhooks", "RelayVerificationFailing", "RelayEventStoreFailing", "RelaySubscriptionAutoDisabled"} {
		if !alerts[a] {
			t.Errorf("alert %s is missing", a)
		}
	}
	checkQueries(t, "alerts.yml", exprs)
}

func TestDashboardQueriesRealMetrics(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root, "deploy/grafana/dashboards/relay.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string `json:"uid"`
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	if d.UID != "relay" || len(exprs) < 10 {
		t.Fatalf("dashboard uid %q with %d queries", d.UID, len(exprs))
	}
	checkQueries(t, "relay.json", exprs)
}

// TestOnlyTheLoadBalancerIsTrusted: a source's allowed_ips is checked against
// the client address X-Forwarded-For names, so ingest may believe that
// header only from nginx, and nginx must say who connected to it rather
// than pass on what the sender wrote. Trusting every address let any sender
// name an allowed address as the leftmost X-Forwarded-For.
func TestOnlyTheLoadBalancerIsTrusted(t *testing.T) {
	p := loadCompose(t)
	lb := p.Services["lb"]
	var lbAddr string
	for _, n := range lb.Networks {
		if n != nil && n.Ipv4Address != "" {
			lbAddr = n.Ipv4Address
		}
	}
	if lbAddr == "" {
		t.Fatal("lb has no fixed address on the compose network: ingest cannot name it as its only trusted proxy")
	}
	lbIP, err := netip.ParseAddr(lbAddr)
	if err != nil {
		t.Fatal(err)
	}
	inSubnet := false
	for _, n := range p.Networks {
		if n.Ipam.Config == nil {
			continue
		}
		for _, c := range n.Ipam.Config {
			if pfx, err := netip.ParsePrefix(c.Subnet); err == nil && pfx.Contains(lbIP) {
				inSubnet = true
			}
		}
	}
	if !inSubnet {
		t.Errorf("lb's address %s is in no subnet the compose file fixes", lbAddr)
	}
	for _, name := range []string{"ingest-1", "ingest-2"} {
		v := p.Services[name].Environment["RELAY_TRUSTED_PROXIES"]
		if v == nil {
			t.Errorf("%s trusts no proxy: behind nginx, every source with allowed_ips would refuse every webhook", name)
			continue
		}
		for _, entry := range strings.Split(*v, ",") {
			entry = strings.TrimSpace(entry)
			if pfx, err := netip.ParsePrefix(entry); err == nil {
				if pfx.Bits() != pfx.Addr().BitLen() || pfx.Addr() != lbIP {
					t.Errorf("%s trusts %s: only the load balancer (%s) may name the client", name, entry, lbAddr)
				}
			} else if entry != lbAddr {
				t.Errorf("%s trusts %s: only the load balancer (%s) may name the client", name, entry, lbAddr)
			}
		}
	}
	conf, err := os.ReadFile(filepath.Join(root, "deploy/nginx/nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`proxy_set_header\s+X-Forwarded-For\s+\$remote_addr;`).Match(conf) || strings.Contains(string(conf), "$proxy_add_x_forwarded_for") {
		t.Error("nginx must overwrite X-Forwarded-For with the address that connected to it ($remote_addr), never append to the sender's")
	}
}

// Package kubernetes_test checks OrderFlow's Kubernetes manifests: each overlay renders
// (kustomize, as kubectl kustomize does), and every object decodes strictly into its
// Kubernetes API type (an unknown or misspelt field is an error), and the objects agree
// with each other and with how the binary runs.
package kubernetes_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// objects are the rendered objects of one overlay, typed.
type objects struct {
	deployments     []appsv1.Deployment
	services        []corev1.Service
	configMaps      []corev1.ConfigMap
	secrets         []corev1.Secret
	jobs            []batchv1.Job
	hpas            []autoscalingv2.HorizontalPodAutoscaler
	pdbs            []policyv1.PodDisruptionBudget
	networkPolicies []networkingv1.NetworkPolicy
	serviceAccounts []corev1.ServiceAccount
	namespaces      []corev1.Namespace
}

// render builds dir with kustomize and decodes every object strictly.
func render(t *testing.T, dir string) objects {
	t.Helper()
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var o objects
	for _, r := range res.Resources() {
		doc, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		name := dir + ": " + r.GetKind() + "/" + r.GetName()
		switch gvk := r.GetGvk(); gvk.ApiVersion() + " " + gvk.Kind {
		case "apps/v1 Deployment":
			o.deployments = append(o.deployments, strict[appsv1.Deployment](t, name, doc))
		case "v1 Service":
			o.services = append(o.services, strict[corev1.Service](t, name, doc))
		case "v1 ConfigMap":
			o.configMaps = append(o.configMaps, strict[corev1.ConfigMap](t, name, doc))
		case "v1 Secret":
			o.secrets = append(o.secrets, strict[corev1.Secret](t, name, doc))
		case "batch/v1 Job":
			o.jobs = append(o.jobs, strict[batchv1.Job](t, name, doc))
		case "autoscaling/v2 HorizontalPodAutoscaler":
			o.hpas = append(o.hpas, strict[autoscalingv2.HorizontalPodAutoscaler](t, name, doc))
		case "policy/v1 PodDisruptionBudget":
			o.pdbs = append(o.pdbs, strict[policyv1.PodDisruptionBudget](t, name, doc))
		case "networking.k8s.io/v1 NetworkPolicy":
			o.networkPolicies = append(o.networkPolicies, strict[networkingv1.NetworkPolicy](t, name, doc))
		case "v1 ServiceAccount":
			o.serviceAccounts = append(o.serviceAccounts, strict[corev1.ServiceAccount](t, name, doc))
		case "v1 Namespace":
			o.namespaces = append(o.namespaces, strict[corev1.Namespace](t, name, doc))
		default:
			t.Errorf("%s is of a kind this test does not know (%s): add it", name, gvk)
		}
	}
	return o
}

// strict decodes doc into its Kubernetes API type, refusing any field the type lacks.
func strict[T any](t *testing.T, name string, doc []byte) T {
	t.Helper()
	var v T
	if err := yaml.UnmarshalStrict(doc, &v); err != nil {
		t.Errorf("%s does not decode strictly: %v", name, err)
	}
	return v
}

// A field Kubernetes does not know is an error, as it would be for the API server with
// strict field validation; the check itself must catch one.
func TestStrictDecodingRefusesAnUnknownField(t *testing.T) {
	var d appsv1.Deployment
	err := yaml.UnmarshalStrict([]byte("apiVersion: apps/v1\nkind: Deployment\nspec:\n  replica: 2\n"), &d)
	if err == nil || !strings.Contains(err.Error(), "replica") {
		t.Fatalf("a misspelt field: %v, want an error naming it", err)
	}
}

func TestTheManifestsRenderAndAgree(t *testing.T) {
	for _, dir := range []string{"base", "overlays/production"} {
		t.Run(dir, func(t *testing.T) {
			o := render(t, dir)
			checkWorkloads(t, o)
			checkSelectors(t, o)
		})
	}
	prod := render(t, "overlays/production")
	for _, d := range prod.deployments {
		if d.Namespace != "orderflow" {
			t.Errorf("%s: namespace %q, want the overlay's", d.Name, d.Namespace)
		}
		if img := d.Spec.Template.Spec.Containers[0].Image; img != "orderflow:1.0.0" {
			t.Errorf("%s: image %q, want the overlay's pinned orderflow:1.0.0", d.Name, img)
		}
	}
	if w := deployment(t, prod, "orderflow-worker"); w.Spec.Replicas == nil || *w.Spec.Replicas != 3 {
		t.Errorf("the overlay's workers: %v, want 3", w.Spec.Replicas)
	}
}

func deployment(t *testing.T, o objects, name string) appsv1.Deployment {
	t.Helper()
	for _, d := range o.deployments {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("no Deployment %s", name)
	return appsv1.Deployment{}
}

// checkWorkloads checks what every pod of OrderFlow must have: resources, probes, the
// secrets as files, no registry host in an image, and a grace period that covers the
// worker's drain.
func checkWorkloads(t *testing.T, o objects) {
	t.Helper()
	var config map[string]string
	for _, c := range o.configMaps {
		if c.Name == "orderflow" {
			config = c.Data
		}
	}
	if config == nil {
		t.Fatal("no orderflow ConfigMap")
	}
	drain, err := time.ParseDuration(config["SHUTDOWN_TIMEOUT"])
	if err != nil {
		t.Fatalf("SHUTDOWN_TIMEOUT %q: %v", config["SHUTDOWN_TIMEOUT"], err)
	}
	for k := range config {
		if strings.Contains(strings.ToLower(k), "password") || k == "DATABASE_URL" || k == "TEMPORAL_API_KEY" {
			t.Errorf("ConfigMap holds %s: secrets belong in orderflow-secrets, as files", k)
		}
	}
	pods := map[string]corev1.PodSpec{}
	for _, d := range o.deployments {
		pods["Deployment/"+d.Name] = d.Spec.Template.Spec
		if grace := d.Spec.Template.Spec.TerminationGracePeriodSeconds; grace == nil || time.Duration(*grace)*time.Second < drain+10*time.Second {
			t.Errorf("%s: terminationGracePeriodSeconds %v, want at least SHUTDOWN_TIMEOUT (%s) + 10s", d.Name, grace, drain)
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.LivenessProbe == nil || c.ReadinessProbe == nil {
				t.Errorf("%s/%s: liveness and readiness probes are required", d.Name, c.Name)
			}
			for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
				if p != nil && (p.HTTPGet == nil || (p.HTTPGet.Path != "/healthz" && p.HTTPGet.Path != "/readyz")) {
					t.Errorf("%s/%s: a probe not on /healthz or /readyz", d.Name, c.Name)
				}
			}
		}
	}
	for _, j := range o.jobs {
		pods["Job/"+j.Name] = j.Spec.Template.Spec
	}
	for name, p := range pods {
		if p.AutomountServiceAccountToken == nil || *p.AutomountServiceAccountToken {
			t.Errorf("%s: mounts a service account token it has no use for", name)
		}
		if p.SecurityContext == nil || p.SecurityContext.RunAsNonRoot == nil || !*p.SecurityContext.RunAsNonRoot {
			t.Errorf("%s: must run as non-root", name)
		}
		for _, c := range p.Containers {
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() ||
				c.Resources.Limits.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
				t.Errorf("%s/%s: CPU and memory requests and limits are required", name, c.Name)
			}
			if first, _, ok := strings.Cut(c.Image, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
				t.Errorf("%s/%s: image %q names a registry host", name, c.Name, c.Image)
			}
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					t.Errorf("%s/%s: secret %s in the environment; mount it as a file", name, c.Name, e.Name)
				}
			}
			if c.SecurityContext == nil || c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation {
				t.Errorf("%s/%s: must not allow privilege escalation", name, c.Name)
			}
		}
	}
	for _, want := range []string{"orderflow-migrate", "orderflow-search-attributes"} {
		if !slices.ContainsFunc(o.jobs, func(j batchv1.Job) bool { return j.Name == want }) {
			t.Errorf("no Job %s", want)
		}
	}
}

// checkSelectors checks that every Service, PodDisruptionBudget and NetworkPolicy
// selects pods that exist, and every autoscaler scales a Deployment that exists.
func checkSelectors(t *testing.T, o objects) {
	t.Helper()
	var podLabels []labels.Set
	for _, d := range o.deployments {
		podLabels = append(podLabels, d.Spec.Template.Labels)
		sel := labels.SelectorFromSet(d.Spec.Selector.MatchLabels)
		if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("Deployment %s: its selector does not match its pods", d.Name)
		}
	}
	for _, j := range o.jobs {
		podLabels = append(podLabels, j.Spec.Template.Labels)
	}
	selects := func(what string, sel labels.Selector) {
		if !slices.ContainsFunc(podLabels, func(l labels.Set) bool { return sel.Matches(l) }) {
			t.Errorf("%s selects no pod", what)
		}
	}
	for _, s := range o.services {
		selects("Service "+s.Name, labels.SelectorFromSet(s.Spec.Selector))
	}
	for _, p := range o.pdbs {
		selects("PodDisruptionBudget "+p.Name, labels.SelectorFromSet(p.Spec.Selector.MatchLabels))
	}
	for _, n := range o.networkPolicies {
		selects("NetworkPolicy "+n.Name, labels.SelectorFromSet(n.Spec.PodSelector.MatchLabels))
	}
	for _, h := range o.hpas {
		ref := h.Spec.ScaleTargetRef
		if ref.Kind != "Deployment" || !slices.ContainsFunc(o.deployments, func(d appsv1.Deployment) bool { return d.Name == ref.Name }) {
			t.Errorf("HorizontalPodAutoscaler %s scales %s/%s, which is not here", h.Name, ref.Kind, ref.Name)
		}
	}
	if len(o.networkPolicies) == 0 {
		t.Error("no NetworkPolicy")
	}
}

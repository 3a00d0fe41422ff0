import { call, get, operation } from "./api.js";
import { h, show, errorBox } from "./dom.js";

const EXAMPLE = `# YAML or JSON: the same spec as \`vmhost create -f\`
name: web-1
memory: 512MiB
cpu:
  vcpus: 1
`;

// A spec editor: Validate shows every problem at its path (POST /v1/validate), then Create / Create and start.
export function createPage() {
  const editor = h("textarea", { id: "spec-editor", rows: 18, spellcheck: "false", "aria-describedby": "spec-help" });
  editor.value = EXAMPLE;
  const result = h("div", { id: "spec-result", "aria-live": "polite" });
  const type = () => (editor.value.trim().startsWith("{") ? "application/json" : "application/yaml");

  async function validate() {
    result.replaceChildren(h("p", {}, "validating…"));
    try {
      const answer = await call("POST", "/v1/validate", editor.value, type());
      result.replaceChildren(h("p", { class: "ok", id: "spec-valid" }, `valid: this host can create ${answer.name}`));
      return answer.name;
    } catch (error) {
      result.replaceChildren(errorBox(error));
      return null;
    }
  }

  async function create(start) {
    const name = await validate();
    if (!name) return;
    result.replaceChildren(h("p", {}, start ? "creating and starting…" : "creating…"));
    try {
      await operation("POST", `/v1/vms${start ? "?start=true" : ""}`, editor.value, type());
      location.hash = `#/vm/${encodeURIComponent(name)}`;
    } catch (error) {
      result.replaceChildren(errorBox(error));
    }
  }

  // The spec's fields from the agent's JSON Schema: each with its type and meaning; a click adds it at the cursor.
  const fields = h("ul", { id: "spec-fields", class: "fields" });
  get("/openapi.json").then((doc) => {
    const schemas = doc.components?.schemas || {};
    const spec = schemas.VMSpec || {};
    fields.replaceChildren(...Object.entries(spec.properties || {}).map(([field, schema]) => {
      const target = schema.$ref ? schemas[schema.$ref.split("/").pop()] : schema;
      const kind = target?.type || (schema.anyOf || []).map((a) => a.type || a.$ref?.split("/").pop()).filter(Boolean).join(" | ") || "object";
      return h("li", {},
        h("button", { type: "button", class: "link", dataset: { field }, onclick: () => insert(field) }, field),
        h("span", { class: "muted" }, ` ${kind}${(spec.required || []).includes(field) ? ", required" : ""}: `),
        (schema.description || target?.description || "").split("\n")[0]);
    }));
  }).catch(() => fields.replaceChildren(h("li", { class: "muted" }, "the field list needs /openapi.json")));

  function insert(field) {
    const at = editor.selectionStart;
    const before = editor.value.slice(0, at);
    const prefix = before && !before.endsWith("\n") ? "\n" : "";
    editor.setRangeText(`${prefix}${field}: `, at, editor.selectionEnd, "end");
    editor.focus();
  }

  show(
    h("h1", {}, "Create"),
    h("label", { for: "spec-editor" }, "Spec"),
    h("p", { id: "spec-help", class: "muted" }, "YAML or JSON. The fields are listed below; `vmhost explain FIELD` on the host says more."),
    editor,
    h("div", { class: "actions" },
      h("button", { type: "button", id: "validate", onclick: validate }, "Validate"),
      h("button", { type: "button", id: "create", onclick: () => create(false) }, "Create"),
      h("button", { type: "button", id: "create-start", onclick: () => create(true) }, "Create and start")),
    result,
    h("details", { open: true }, h("summary", {}, "Fields of a spec (from the agent's JSON Schema)"), fields),
  );
}

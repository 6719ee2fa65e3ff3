"""Try it tab: classify a typed review with the run's model (or a checkpoint, or the base model), see
why word by word, or predict a whole uploaded table (:mod:`pages.ui.runs_tabs.batch`).

Trying models is looking, not managing: it works for every visitor, signed in or not, and in read-only
mode. The work one click costs is bounded: the review box takes at most :data:`MAX_CHARS` characters
(Streamlit cuts a longer value on the server too, whatever the browser sends), the model reads at most
its token limit, and the explanation occludes a bounded number of word groups.
"""
from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from lib.errors import LabError
from lib.registry.reconcile import RunView
from lib.serving import examples, explain, predictor
from pages.ui.runs_tabs import TabContext, batch
from pages.ui.runs_tabs.predictors import CALIBRATED_KEY, FAST_KEY, get_predictor
from pages.ui.text import plain, show_lab_error

MAX_CHARS = 20_000   # about 4,000 words: far more than a model's 512 tokens read


def render(run: RunView, ctx: TabContext) -> None:
    choice = pick_model(run)
    st.toggle("Fast CPU mode", value=predictor.default_precision() != "fp32", key=FAST_KEY,
              help="On: the encoder's weights run as 8-bit integers (dynamic quantization), on onnxruntime when "
                   "the run has its ONNX export (the training job writes one), else on PyTorch: two to three "
                   "times as fast on a CPU. On onnxruntime a review the int8 model is unsure of is read again in "
                   "full precision, so the answer is the full-precision one for ~99% of reviews. On a CPU with "
                   "AMX matrix units, a table in the batch mode runs in bfloat16 instead (faster there for many "
                   "reviews, the same label on ~99.5% of them). Off: full precision on PyTorch, exactly the "
                   "numbers the training job evaluated with. Applies to the tryout and the batch mode.")
    st.checkbox("Calibrated probabilities", value=True, key=CALIBRATED_KEY,
                help="On: confidences are softened (or sharpened) by the temperature the training job fitted on "
                     "the evaluation set, so that 90% confidence means right about 9 times in 10. The label is "
                     "the same either way. Models without a fitted temperature (checkpoints, older runs, the base "
                     "model) always show their raw probabilities.")
    st.caption("Examples:")
    ex_cols = st.columns(len(examples.EXAMPLES))
    for i, (name, example) in enumerate(examples.EXAMPLES.items()):
        ex_cols[i].button(name, key=f"try_example_{i}", on_click=set_text, args=(example,))
    with st.form("try_form", border=False):
        text = st.text_area("Review", key="try_text", height=140, max_chars=MAX_CHARS,
                            placeholder="Type or paste a movie review…")
        wants_explanation = st.checkbox("Explain the decision word by word", value=True, key="try_explain")
        submitted = st.form_submit_button("Classify", type="primary")
    if submitted:
        try:
            st.session_state["try_result"] = classify(run, choice, text, wants_explanation)
        except LabError as exc:
            st.session_state.pop("try_result", None)
            show_lab_error(exc)
    if st.session_state.get("try_result"):
        render_result(st.session_state["try_result"])
    st.divider()
    batch.render(run, ctx, choice)


def pick_model(run: RunView) -> predictor.ModelChoice:
    """The model menu: the run's final model, its checkpoints, the base model."""
    choices = predictor.model_choices(run.path)
    prev = st.session_state.get("try_model")
    if (isinstance(prev, predictor.ModelChoice) and prev not in choices and prev.kind != "base"
            and prev.path.startswith(str(run.path) + os.sep)):
        choices.insert(0, prev)  # deleted since it was picked: keep it, so the person sees what happened
    return st.selectbox("Model", choices, format_func=lambda c: c.label, key="try_model",
                        help="The run's exported model, one of its checkpoints, or the base model before "
                             "fine-tuning (its classifier head is untrained: expect coin flips).")


def set_text(text: str) -> None:
    st.session_state["try_text"] = text
    st.session_state.pop("try_result", None)


def classify(run: RunView, choice: predictor.ModelChoice, text: str, wants_explanation: bool) -> dict:
    """Predict (and explain) one review; LabError for an empty text or a missing model."""
    predictor.check_text(text)
    model = get_predictor(run, choice)
    result = model.predict_one(text)
    explanation = None
    if wants_explanation:
        with st.spinner("Explaining…"):
            explanation = model.explain(text)
    return {"result": result, "explanation": explanation, "text": text, "labels": model.label_names,
            "precision": model.precision, "calibrated": model.calibrated, "temperature": model.temperature,
            "runtime": model.runtime, "runtime_note": model.runtime_note}


def render_result(res: dict) -> None:
    result, expl, text, names = res["result"], res.get("explanation"), res["text"], res["labels"]
    c1, c2, c3 = st.columns(3)
    c1.metric("Prediction", plain(result["label"]))
    c2.metric("Confidence", f"{result['confidence']:.1%}")
    engine = "onnxruntime" if res.get("runtime") == "onnx" else "PyTorch"
    c3.metric("Latency", f"{result['latency_ms']:.0f} ms",
              help=f"{res.get('precision', 'fp32')} on {engine}: {predictor.PRECISIONS[res.get('precision', 'fp32')]}")
    if res.get("runtime_note"):
        st.caption(plain(res["runtime_note"]))
    if res.get("calibrated"):
        st.caption(f"Calibrated confidence (temperature {res['temperature']:.2f}, fitted on the evaluation set).")
    if result.get("note"):
        st.info(plain(result["note"]), icon=":material/content_cut:")
    probs = pd.DataFrame({"label": list(result["scores"]), "probability": list(result["scores"].values())})
    st.dataframe(probs, hide_index=True, key="try_probs", column_config={
        "probability": st.column_config.ProgressColumn("probability", min_value=0.0, max_value=1.0, format="%.3f")})
    if expl:
        if len(names) == 2:
            towards = f"green pushes towards {plain(names[-1])}, red towards {plain(names[0])}"
        else:
            towards = f"green supports {plain(result['label'])}, red speaks against it"
        st.markdown(f"**Why** (occlusion: hide each word and see how much the prediction drops; {towards})")
        st.html(explain.highlight_html(expl.get("text", text), expl, names))
        if expl.get("note"):
            st.caption(plain(expl["note"]))
        top = sorted(expl["spans"], key=lambda s: -abs(s["score"]))[:15]
        if top:
            st.dataframe(pd.DataFrame([{"word": s["text"], "weight": round(s["score"], 5)} for s in top]),
                         hide_index=True, key="try_top_words")

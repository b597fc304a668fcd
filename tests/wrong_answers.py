"""Plausible wrong answers for every exercise: each must make that exercise's tests fail.

``WRONG[lesson][question]`` is a list of replacement code for the answer cell.
"""

WRONG = {
    "01_lowrank_lora": {
        "q1": [
            # forgets the singular values
            "def rank_r_approx(W, r):\n    U, S, Vh = torch.linalg.svd(W, full_matrices=False)\n    return U[:, :r] @ Vh[:r]\n",
            # keeps the smallest r singular values instead of the largest
            "def rank_r_approx(W, r):\n    U, S, Vh = torch.linalg.svd(W, full_matrices=False)\n    return (U[:, -r:] * S[-r:]) @ Vh[-r:]\n",
        ],
        "q2": [
            # forgets the scale alpha / r
            "def lora_forward(x, W, b, A, B, alpha, r):\n    return x @ W.T + b + (x @ A.T) @ B.T\n",
            # uses alpha * r
            "def lora_forward(x, W, b, A, B, alpha, r):\n    return x @ W.T + b + alpha * r * (x @ A.T) @ B.T\n",
        ],
        "q3": [
            "def merged_weight(W, A, B, alpha, r):\n    return W + B @ A\n",
            "def merged_weight(W, A, B, alpha, r):\n    return W + (r / alpha) * (B @ A)\n",
        ],
        "q4": [
            # right only for square layers
            "def lora_trainable(d_in, d_out, r):\n    return 2 * r * d_in\n",
            "def lora_trainable(d_in, d_out, r):\n    return r * d_in * d_out\n",
        ],
    },
}
